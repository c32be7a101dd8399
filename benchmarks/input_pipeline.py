r"""Times the pretraining input pipeline alone (two augmented views per image, batch, prefetch).

    python -m benchmarks.input_pipeline                                   # every preset, Fashion-MNIST
    python -m benchmarks.input_pipeline --augments=fashion_mnist --step_json=/tmp/step_throughput.json

Prints images/s per augmentation preset over --batches batches after --warmup batches, for each
of --modes: `vectorized` (the default pipeline: whole batches through `TwoViewAugment.batch`) and
`per_example` (the same ops, one image per map call as a batch of one: how sources of varying image
size are augmented, and what the pipeline cost before it was vectorised). With
--step_json (written by `benchmarks.step_throughput`), it also prints what each train step row
consumes and whether the pipeline keeps up (pipeline images/s over step images/s: below 1 the
pipeline is the bottleneck; during training both share the same cores, so leave a margin) for the
first mode.
"""

import json
import os
import time

import trainers  # noqa: E402,F401  (TensorFlow environment defaults, before TensorFlow)

from absl import app, flags

flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (in-memory datasets: fashion_mnist, mnist, synthetic).")
flags.DEFINE_list("augments", ["fashion_mnist", "cifar", "mocov1", "mocov2", "simclr", "byol"],
                  "Augmentation presets to time.")
flags.DEFINE_list("modes", ["vectorized", "per_example"], "Pipelines to time: vectorized, per_example.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_integer("batches", 40, "Timed batches.")
flags.DEFINE_integer("warmup", 5, "Untimed batches.")
flags.DEFINE_string("step_json", None, "Rows of benchmarks.step_throughput to compare against.")
flags.DEFINE_string("json", None, "Write the results here.")
FLAGS = flags.FLAGS


def pipeline_rate(images, info, preset, batch_size, batches, warmup, mode="vectorized"):
    """Images per second the two-view pipeline delivers for one preset."""
    from mixmask_tf import augment, data

    views = augment.TwoViewAugment.from_preset(preset, images.shape[1:3], images.shape[3], info.mean, info.std)
    iterator = iter(data.make_pretrain_dataset(images, batch_size, views, seed=0, start_epoch=0,
                                               vectorized=mode == "vectorized"))
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    from mixmask_tf import data

    images, _, info = data.load_dataset(FLAGS.dataset, "train")
    print(f"{FLAGS.dataset}: {images.shape[0]} images {images.shape[1:]}, batch {FLAGS.batch_size}, "
          f"{os.cpu_count()} cores", flush=True)
    unknown = set(FLAGS.modes) - {"vectorized", "per_example"}
    if unknown or not FLAGS.modes:
        raise app.UsageError(f"--modes takes vectorized, per_example; got {','.join(FLAGS.modes)}")
    per_mode = {mode: {} for mode in FLAGS.modes}
    for preset in FLAGS.augments:
        for mode in FLAGS.modes:
            per_mode[mode][preset] = pipeline_rate(images, info, preset, FLAGS.batch_size, FLAGS.batches,
                                                   FLAGS.warmup, mode)
        print(f"{preset:14s} " + "  ".join(f"{mode} {per_mode[mode][preset]:7.0f}" for mode in FLAGS.modes)
              + " images/s (two views each)", flush=True)
    results = per_mode[FLAGS.modes[0]]
    comparisons = []
    if FLAGS.step_json:
        with open(FLAGS.step_json) as f:
            rows = json.load(f)["rows"]
        shape = list(images.shape[1:])
        for row in rows:
            if row["image_shape"] != shape:
                continue
            for preset, rate in results.items():
                comparisons.append({"preset": preset, "framework": row["framework"], "branch": row["branch"],
                                    "step_images_per_second": row["images_per_second"],
                                    "pipeline_over_step": rate / row["images_per_second"]})
                print(f"{preset:14s} vs {row['framework']} + {row['branch']:14s}: step consumes "
                      f"{row['images_per_second']:6.0f} images/s, pipeline / step = {rate / row['images_per_second']:.1f}",
                      flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"dataset": FLAGS.dataset, "batch_size": FLAGS.batch_size, "mode": FLAGS.modes[0],
                       "images_per_second": results, "images_per_second_per_mode": per_mode,
                       "comparisons": comparisons}, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
