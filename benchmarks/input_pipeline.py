r"""Times the pretraining input pipeline alone (decode, two augmented views, batch, prefetch).

    python -m benchmarks.input_pipeline --dataset=fashion_mnist --augment=fashion_mnist --batch_size=256

Prints images/s over --batches batches after --warmup batches.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name.")
flags.DEFINE_string("augment", "fashion_mnist", "Augmentation preset.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_integer("batches", 40, "Timed batches.")
flags.DEFINE_integer("warmup", 5, "Untimed batches.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from mixmask_tf import augment, data

    images, _, info = data.load_dataset(FLAGS.dataset, "train")
    views = augment.TwoViewAugment.from_preset(FLAGS.augment, images.shape[1:3], images.shape[3], info.mean, info.std)
    iterator = iter(data.make_pretrain_dataset(images, FLAGS.batch_size, views, seed=0))
    for _ in range(FLAGS.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    seconds = time.perf_counter() - start
    print(f"{FLAGS.dataset} / {FLAGS.augment}: {FLAGS.batches * FLAGS.batch_size / seconds:.0f} images/s "
          f"(two views each, batch {FLAGS.batch_size}, {FLAGS.batches} batches)")


if __name__ == "__main__":
    app.run(main)
