r"""Times the compiled train step (no input pipeline: one fixed batch, repeated).

    python -m benchmarks.train_step --backbone=small_convnet --width=16 --batch_size=256

Prints one line per (branch, jit) combination: ms/step and images/s after warm-up.
"""

import os
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("backbone", "small_convnet", ["small_convnet", "resnet18_cifar", "resnet50"], "Backbone.")
flags.DEFINE_integer("width", 16, "Small ConvNet width.")
flags.DEFINE_list("image_shape", ["28", "28", "1"], "H,W,C.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_list("branches", ["none", "mixmask"], "Branches to time.")
flags.DEFINE_list("jit", ["false"], "XLA settings to time (true/false).")
flags.DEFINE_integer("grid_size", 4, "MixMask grid size.")
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (tracing, compilation).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import backbones, branches
    from mixmask_tf.models import MoCo

    shape = tuple(int(v) for v in FLAGS.image_shape)
    batch = np.random.default_rng(0).normal(size=(FLAGS.batch_size, 2) + shape).astype("float32")
    data = tf.data.Dataset.from_tensors(batch).repeat()
    print(f"device: {tf.config.list_logical_devices()[-1].device_type}, backbone {FLAGS.backbone}, "
          f"input {shape}, batch {FLAGS.batch_size}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    for name in FLAGS.branches:
        for jit in FLAGS.jit:
            kwargs = {"width": FLAGS.width} if FLAGS.backbone == "small_convnet" else {}
            backbone = backbones.build_backbone(FLAGS.backbone, shape, **kwargs)
            branch = branches.build_branch(name, **({"grid_size": FLAGS.grid_size} if name == "mixmask" else {}))
            model = MoCo(backbone, branch=branch, queue_size=4096)
            model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9), jit_compile=jit == "true")
            model.fit(data, steps_per_epoch=FLAGS.warmup, verbose=0)
            start = time.perf_counter()
            model.fit(data, steps_per_epoch=FLAGS.steps, verbose=0)
            seconds = (time.perf_counter() - start) / FLAGS.steps
            print(f"branch={name:8s} jit={jit:5s} {seconds * 1000:8.1f} ms/step {FLAGS.batch_size / seconds:8.0f} img/s",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
