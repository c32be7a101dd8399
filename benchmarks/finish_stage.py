r"""Times the finish stage of the views (flip, colour jitter, grayscale, blur, solarise, normalise)
alone, three ways, on one batch:

* ``host``: the host mode's graph (``dense=False``: the colour ops compiled with XLA, the jitter
  image by image, only the chosen images blurred);
* ``dense``: the device mode's graph (every op on every image, then selected), not compiled;
* ``xla``: the same, compiled with XLA (``jit_compile=True``), what a train step on an accelerator runs.

    python -m benchmarks.finish_stage --augment=mocov2 --image_size=224 --batch_size=64 --repeats=5

Prints the median milliseconds per batch of each (all V views). On a CPU it says what
``--augment_on=device`` would cost a CPU-only user, and why ``--augment_on=auto`` keeps the host mode there.
"""

import time

import trainers  # noqa: F401  (TensorFlow environment defaults, before TensorFlow)

from absl import app, flags

flags.DEFINE_string("augment", "mocov2", "Augmentation preset.")
flags.DEFINE_integer("image_size", 224, "View size.")
flags.DEFINE_integer("channels", 3, "Channels (1 or 3).")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("repeats", 5, "Timed calls per way (after one untimed call).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import augment

    c = FLAGS.channels
    views = augment.TwoViewAugment.from_preset(FLAGS.augment, FLAGS.image_size, c, (0.5,) * c, (0.25,) * c)
    side = FLAGS.image_size + FLAGS.image_size // 8
    images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch_size, side, side, c), dtype=np.uint8)
    packed = views.batch(tf.constant(images), tf.constant([1, 2], tf.int64), packed=True)
    crops, params = augment.unpack_views(packed, views.num_views, views.output_size, c)
    ways = {"host": tf.function(lambda x, p: views.finish(x, p, dense=False)),
            "dense": tf.function(lambda x, p: views.finish(x, p, dense=True)),
            "xla": tf.function(lambda x, p: views.finish(x, p, dense=True), jit_compile=True)}
    print(f"{FLAGS.augment}, {FLAGS.batch_size} images x {views.num_views} views of {FLAGS.image_size} px")
    for name, fn in ways.items():
        fn(crops, params).numpy()
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            fn(crops, params).numpy()
            times.append(time.perf_counter() - start)
        print(f"{name:7s} {1e3 * float(np.median(times)):8.1f} ms per batch", flush=True)


if __name__ == "__main__":
    app.run(main)
