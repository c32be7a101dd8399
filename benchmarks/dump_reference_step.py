r"""Dumps one MoCo v2 + MixMask train step of mixmask-tf for the PyTorch cross-check.

    python -m benchmarks.dump_reference_step --out /tmp/ref_step.npz
    /work/torchvenv/bin/python -m benchmarks.torch_reference --verify /tmp/ref_step.npz

Builds the mixmask-tf MoCo v2 trainer with the MixMask branch (small ConvNet, small batch and
queue so it runs in seconds), runs `--steps` train steps (default one) on a fixed random batch
with `train_on_batch`, and writes an npz that `benchmarks/torch_reference.py --verify` replays
in PyTorch:

* `q/<layer>/<var>`, `k/<layer>/<var>`: every weight of the query and key encoder before the
  first step (Keras layouts: conv kernels HWIO, dense kernels [in, out], BN gamma / beta /
  moving_mean / moving_variance); `q_after/...`, `k_after/...` after the last step.
* `queue`, `queue_ptr` before; `queue_after`, `queue_ptr_after` after.
* `views` [N, 2, H, W, C] (view 1 = query, view 2 = key), the same batch every step.
* per step s: `step{s}/mask` [1, H, W, 1] and `step{s}/perm` [N] (what the branch drew with
  the trainer's step seed, `trainer.step_seed(replica_id)`, exactly as `branch_outputs` does),
  `step{s}/mixed` (the mixed query batch), and the step's logged terms `step{s}/loss`,
  `loss_clean`, `loss_mix`, `loss_switch`, `lambda`.
* `mask_stats/counts` [num_draws]: cells set in many independent G x G blocked masks of the
  TF generator (`masks.grid_masks`), so the torch generator's distribution can be compared.
* `meta`: JSON with the configuration.

To exercise every part of the step, the key encoder is made different from the query encoder
before the first step (multiplicative noise, `--key_noise`; otherwise the EMA at step 0 would be
a no-op) and the queue pointer starts at `--queue_ptr` (default: so that the enqueue wraps
around the end of the queue). The optimizer is `SGDL2` (torch-style coupled L2 weight decay,
as `torch.optim.SGD(weight_decay=...)`), constant learning rate, on every weight.
"""

import argparse
import json

import trainers  # noqa: F401  (the TensorFlow environment defaults, before TensorFlow)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/ref_step.npz", help="Output npz path.")
    p.add_argument("--backbone", default="small_convnet", choices=["small_convnet", "resnet18_cifar"])
    p.add_argument("--width", type=int, default=8, help="Small ConvNet width.")
    p.add_argument("--image_shape", default=None, help="H,W,C (default 28,28,1 small ConvNet, 32,32,3 ResNet).")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--queue_size", type=int, default=64)
    p.add_argument("--queue_ptr", type=int, default=None,
                   help="Initial queue pointer (default queue_size - batch_size // 2: the enqueue wraps).")
    p.add_argument("--grid_size", type=int, default=4)
    p.add_argument("--mask_ratio", type=float, default=0.5)
    p.add_argument("--permutation", default="reverse", choices=["reverse", "random"])
    p.add_argument("--embedding_dim", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--moco_momentum", type=float, default=0.99)
    p.add_argument("--learning_rate", type=float, default=0.06)
    p.add_argument("--sgd_momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=5e-4, help="Coupled L2 (SGDL2).")
    p.add_argument("--key_noise", type=float, default=0.05,
                   help="Relative noise applied to the key encoder before step 0 (0: key = query).")
    p.add_argument("--steps", type=int, default=1, help="Train steps to record (1 = the brief's one step).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask_draws", type=int, default=4000,
                   help="Independent TF blocked masks whose cell counts are saved (0: none).")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import backbones, branches, models
    from mixmask_tf.ops import masks, mixing
    from mixmask_tf.models import trainer as base
    from mixmask_tf.optimizers import SGDL2

    if args.image_shape:
        shape = tuple(int(v) for v in args.image_shape.split(","))
    else:
        shape = (28, 28, 1) if args.backbone == "small_convnet" else (32, 32, 3)
    keras.utils.set_random_seed(args.seed)
    kwargs = {"width": args.width} if args.backbone == "small_convnet" else {}
    backbone = backbones.build_backbone(args.backbone, shape, **kwargs)
    branch = branches.build_branch("mixmask", grid_size=args.grid_size, ratio=args.mask_ratio,
                                   permutation=args.permutation)
    model = models.build_trainer(
        "mocov2", backbone, branch=branch, seed=args.seed, embedding_dim=args.embedding_dim,
        queue_size=args.queue_size, momentum=args.moco_momentum, temperature=args.temperature)
    optimizer = SGDL2(args.learning_rate, momentum=args.sgd_momentum, l2=args.weight_decay)
    model.compile(optimizer=optimizer, jit_compile=False)

    rng = np.random.default_rng(args.seed + 1)
    # Make the key encoder differ from the query encoder (else step 0's EMA tests nothing).
    if args.key_noise:
        for w in model.key_encoder.weights:
            value = w.numpy()
            noise = rng.normal(size=value.shape).astype(np.float32) * args.key_noise
            if w.path.endswith("moving_variance"):
                w.assign(value * np.exp(noise))  # stays positive
            elif w.path.endswith("moving_mean"):
                w.assign(value + noise)
            else:
                w.assign(value * (1.0 + noise) + noise * 0.1 * float(np.std(value) or 1.0))
    ptr = args.queue_ptr if args.queue_ptr is not None else args.queue_size - args.batch_size // 2
    model.queue_ptr.assign(ptr % args.queue_size)

    views = rng.normal(size=(args.batch_size, 2) + shape).astype(np.float32)
    q_names = [w.path for w in model.query_encoder.weights]
    k_names = [w.path for w in model.key_encoder.weights]
    if q_names != k_names:
        raise RuntimeError(f"query/key weight names differ: {q_names} vs {k_names}")
    out = {"views": views}

    def dump_weights(prefix):
        for name, wq, wk in zip(q_names, model.query_encoder.weights, model.key_encoder.weights):
            out[f"q{prefix}/{name}"] = wq.numpy()
            out[f"k{prefix}/{name}"] = wk.numpy()
        out[f"queue{prefix}"] = model.queue.numpy()
        out[f"queue_ptr{prefix}"] = np.array(model.queue_ptr.numpy(), np.int64)

    dump_weights("")
    x1 = tf.constant(views[:, 0])
    batch = tf.constant(views)
    for s in range(args.steps):
        # The seed branch_outputs uses in this step (optimizer.iterations == s before the step).
        seed = model.step_seed(base.replica_id())
        mixture = mixing.mixmask(x1, seed, permutation=branch.permutation, **branch.mask.as_dict())
        branch_images = model.branch_outputs(x1).batches[0].images
        if not np.array_equal(branch_images.numpy(), mixture.images.numpy()):
            raise RuntimeError("the branch's mixed batch differs from the recomputed mixture")
        perm = tf.math.invert_permutation(mixture.switch_index).numpy()
        out[f"step{s}/seed"] = seed.numpy()
        out[f"step{s}/mask"] = mixture.masks.numpy()
        out[f"step{s}/perm"] = perm.astype(np.int64)
        out[f"step{s}/mixed"] = mixture.images.numpy()
        logs = model.train_on_batch(batch, return_dict=True)
        for name in ("loss", "loss_clean", "loss_mix", "loss_switch", "lambda"):
            out[f"step{s}/{name}"] = np.array(float(logs[name]), np.float64)
        print(f"step {s}: seed {seed.numpy().tolist()} lambda {float(logs['lambda']):.4f} "
              + " ".join(f"{k} {float(v):.6f}" for k, v in logs.items() if k.startswith("loss")))
    dump_weights("_after")

    if args.mask_draws:
        grids = masks.grid_masks(tf.constant([args.seed, 12345], tf.int32), args.mask_draws, args.grid_size,
                                 mask_type="blocked", ratio=args.mask_ratio)
        out["mask_stats/counts"] = tf.reduce_sum(grids, axis=[1, 2]).numpy().astype(np.int64)
        out["mask_stats/cell_freq"] = tf.reduce_mean(grids, axis=0).numpy()

    meta = {"framework": "mocov2", "backbone": args.backbone, "width": args.width, "image_shape": list(shape),
            "batch_size": args.batch_size, "queue_size": args.queue_size, "grid_size": args.grid_size,
            "mask_ratio": args.mask_ratio, "permutation": args.permutation,
            "min_block_cells": masks.default_min_block_cells(args.grid_size),
            "embedding_dim": args.embedding_dim, "hidden_dim": model.hidden_dim,
            "temperature": args.temperature, "moco_momentum": args.moco_momentum,
            "learning_rate": args.learning_rate, "sgd_momentum": args.sgd_momentum,
            "weight_decay": args.weight_decay, "weight_decay_style": "l2 (coupled, every weight)",
            "steps": args.steps, "seed": args.seed, "key_noise": args.key_noise,
            "weight_names": q_names, "tensorflow": tf.__version__, "keras": keras.__version__}
    out["meta"] = np.array(json.dumps(meta))
    np.savez(args.out, **out)
    print(f"wrote {args.out} ({len(out)} arrays)")


if __name__ == "__main__":
    main()
