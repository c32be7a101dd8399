"""Hashes the weights of every framework x branch after a few pretraining steps, for refactorings.

    .venv/bin/python -m benchmarks.weight_hashes > /tmp/weights_here.txt

Run it in two checkouts (before and after a change to the trainers, the branches or their ops) and
`diff` the outputs: equal lines mean bit-identical weights (and optimizer state) after the same
steps on the same batches. Every framework is paired with every branch (the saliency branch with
``hard_negatives=0`` on BYOL and SimSiam, which have no negatives). The batches come from the
Fashion-MNIST-shaped synthetic set through the ``fashion_mnist`` preset, with the branch's extra
views where it asks for them, so the pipeline, the branch and the train step are all exercised.
It uses only the public building API (``build_trainer``, ``branches.build_branch``,
``augment.TwoViewAugment``, ``data.make_pretrain_dataset``), so an older checkout runs it too
(copy the file there and run ``python weight_hashes.py`` from that checkout's root).
"""

import argparse
import hashlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.getcwd())  # the checkout it is run from, also when the file is copied elsewhere

import numpy as np  # noqa: E402

FRAMEWORKS = ["mocov1", "mocov2", "simclr", "byol", "simsiam"]
BRANCHES = ["none", "mixmask", "unmix", "mixmask_unmix", "erase", "mscn", "saliency"]
FRAMEWORK_OPTIONS = {"mocov1": dict(queue_size=64), "mocov2": dict(queue_size=64)}
BRANCH_OPTIONS = {"mixmask": dict(grid_size=4), "mixmask_unmix": dict(grid_size=4),
                  "erase": dict(grid_size=4)}


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def hash_pair(framework, branch_name, steps=2, batch_size=16):
    import keras
    from mixmask_tf import augment, backbones, branches, data
    from mixmask_tf.models import build_trainer

    keras.utils.set_random_seed(0)
    options = dict(BRANCH_OPTIONS.get(branch_name, {}))
    if branch_name == "saliency" and framework in ("byol", "simsiam"):
        options["hard_negatives"] = 0
    branch = branches.build_branch(branch_name, **options)
    images, _ = data.synthetic_dataset(batch_size * steps, (28, 28, 1), seed=1)
    views = augment.TwoViewAugment.from_preset("fashion_mnist", (28, 28), 1, (0.5,), (0.25,),
                                               extra_views=getattr(branch, "extra_views", 0))
    dataset = data.make_pretrain_dataset(images, batch_size=batch_size, view_fn=views, seed=0)
    backbone = backbones.small_convnet((28, 28, 1), width=4)
    model = build_trainer(framework, backbone, branch=branch, seed=0,
                          **FRAMEWORK_OPTIONS.get(framework, {}))
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(dataset.take(steps), epochs=1, verbose=0)
    weights = [w.numpy() for w in model.weights]
    weights += [v.numpy() for v in model.optimizer.variables]
    return digest(weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--branches", default=",".join(BRANCHES))
    args = parser.parse_args()
    for framework in args.frameworks.split(","):
        for branch in args.branches.split(","):
            print(f"{framework} {branch} {hash_pair(framework, branch)}", flush=True)


if __name__ == "__main__":
    main()
