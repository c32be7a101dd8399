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

**Photographs at ImageNet sizes** (``--folder``): times the two-view pipeline on an image folder of
JPEGs, in images/s and images/s per core, in two modes: ``full_image`` (the default for files:
each view's crop drawn on the full image, only that window decoded with ``decode_and_crop_jpeg``)
and ``centre_square`` (what file sources did before: decode the whole file, resize its shorter side
to --image_size and cut the centre square, then crop inside it). ``--make_photos=N`` first writes
such a folder: N JPEGs cut at ImageNet's common sizes (500x375, 375x500, 500x333, 333x500,
500x500; quality 90) from real photographs without resampling: matplotlib's sample photo
``grace_hopper.jpg`` (512x600, shipped with matplotlib, a dependency), and any further photos
given with --photos. It then says how many cores of this kind a ResNet-50 MoCo v2 step on one
GPU would need (--gpu_images_per_second: the step's rate, see its help for the source).

    python -m benchmarks.input_pipeline --folder=/tmp/photos --make_photos=512 --augments=mocov2 \
        --image_size=224 --batch_size=64 --batches=8 --warmup=2
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
flags.DEFINE_string("folder", None, "Time an image folder of photographs instead (see the module docstring).")
flags.DEFINE_integer("make_photos", 0, "Write this many ImageNet-size JPEGs into --folder first (0: use it as is).")
flags.DEFINE_list("photos", [], "Further real photographs to cut the --make_photos images from.")
flags.DEFINE_integer("image_size", 224, "--folder: the crop size.")
flags.DEFINE_list("folder_modes", ["full_image", "centre_square"],
                  "--folder: full_image, centre_square, or default (make_pretrain_dataset's default in this checkout: "
                  "run this file from an older checkout to time what it did).")
# NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md ("Training
# performance: NVIDIA DGX A100 (8x A100 80GB)", 1 GPU, pytorch-21.03 container): 2470 img/s mixed
# precision (938 TF32) for supervised training, one forward + backward per image (3 forward units).
# A MoCo v2 step per image is a query forward + backward and a key forward (4 units): 2470 * 3 / 4.
flags.DEFINE_float("gpu_images_per_second", 2470 * 3 / 4,
                   "Images/s a ResNet-50 MoCo v2 step consumes on one GPU: default from NVIDIA's published 1x A100 "
                   "80GB mixed-precision ResNet-50 v1.5 training rate (2470 img/s, one fwd+bwd per image) scaled by "
                   "3/4 for MoCo v2's query fwd+bwd + key fwd per image.")
FLAGS = flags.FLAGS


def pipeline_rate(images, info, preset, batch_size, batches, warmup, mode="vectorized"):
    """Images per second the two-view pipeline delivers for one preset."""
    from mixmask_tf import augment, data

    views = augment.TwoViewAugment.from_preset(preset, images.shape[1:3], images.shape[3], info.mean, info.std)
    return images_per_second(data.make_pretrain_dataset(images, batch_size, views, seed=0, start_epoch=0,
                                                        vectorized=mode == "vectorized"), batch_size, batches, warmup)


def images_per_second(dataset, batch_size, batches, warmup):
    """Images/s over ``batches`` batches of ``dataset`` after ``warmup`` untimed ones."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


PHOTO_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (500, 500))  # (height, width)


def make_photo_folder(folder, count, photos=(), seed=0):
    """Writes ``count`` JPEGs of ImageNet's common sizes into folder/train/photos/, cut from real photos.

    Each image is a window of one of the photos at a random position (no resampling: a photo
    smaller than the window is skipped for that size), randomly mirrored, JPEG quality 90.

    Returns:
      the list of written paths.
    """
    import matplotlib.cbook
    import numpy as np
    import tensorflow as tf

    sources = [matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)] + list(photos)
    arrays = [tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False).numpy() for p in sources]
    rng = np.random.default_rng(seed)
    out = os.path.join(folder, "train", "photos")
    tf.io.gfile.makedirs(out)
    paths = []
    for i in range(count):
        fits = [(a, hw) for a in arrays for hw in PHOTO_SIZES if a.shape[0] >= hw[0] and a.shape[1] >= hw[1]]
        if not fits:
            raise ValueError(f"no photo is large enough for {PHOTO_SIZES}")
        array, (h, w) = fits[rng.integers(len(fits))]
        top, left = rng.integers(array.shape[0] - h + 1), rng.integers(array.shape[1] - w + 1)
        window = array[top:top + h, left:left + w]
        if rng.random() < 0.5:
            window = window[:, ::-1]
        path = os.path.join(out, f"photo_{i:05d}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(np.ascontiguousarray(window), quality=90))
        paths.append(path)
    return paths


def folder_rate(source, preset, batch_size, batches, warmup, full_image):
    """Images per second the two-view pipeline delivers from an image folder."""
    from mixmask_tf import augment, data

    size = source.info.image_shape[0]
    views = augment.TwoViewAugment.from_preset(preset, size, 3, source.info.mean, source.info.std)
    options = {} if full_image is None else {"full_image": full_image}  # None: the checkout's default
    return images_per_second(data.make_pretrain_dataset(source, batch_size, views, seed=0, start_epoch=0, **options),
                             batch_size, batches, warmup)


def time_folder():
    import numpy as np

    from mixmask_tf import data

    if FLAGS.make_photos:
        make_photo_folder(FLAGS.folder, FLAGS.make_photos, FLAGS.photos)
    source = data.open_source("folder", "train", data_dir=FLAGS.folder, image_size=FLAGS.image_size, verify=False)
    cores = len(os.sched_getaffinity(0))
    sizes = []
    for path in source.paths[:200]:
        import tensorflow as tf

        sizes.append(tf.io.extract_jpeg_shape(tf.io.read_file(path)).numpy()[:2])
    mean_hw = np.mean(sizes, axis=0)
    print(f"{FLAGS.folder}: {source.num_examples} JPEGs, mean size {mean_hw[0]:.0f}x{mean_hw[1]:.0f} (h x w), "
          f"crops {FLAGS.image_size}, batch {FLAGS.batch_size}, {cores} cores", flush=True)
    modes = {"full_image": True, "centre_square": False, "default": None}
    unknown = set(FLAGS.folder_modes) - set(modes)
    if unknown or not FLAGS.folder_modes:
        raise app.UsageError(f"--folder_modes takes {', '.join(modes)}; got {','.join(FLAGS.folder_modes)}")
    rows = []
    presets = FLAGS.augments if FLAGS["augments"].present else ["mocov2"]
    for preset in presets:
        for mode in FLAGS.folder_modes:
            rate = folder_rate(source, preset, FLAGS.batch_size, FLAGS.batches, FLAGS.warmup, modes[mode])
            need = FLAGS.gpu_images_per_second / (rate / cores)
            rows.append({"preset": preset, "mode": mode, "images_per_second": rate,
                         "images_per_second_per_core": rate / cores, "cores_for_one_gpu": need})
            print(f"{preset:8s} {mode:13s} {rate:7.1f} images/s (two views each), {rate / cores:6.1f} per core; "
                  f"a ResNet-50 MoCo v2 step at {FLAGS.gpu_images_per_second:.0f} images/s would need "
                  f"{need:.0f} such cores", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"folder": FLAGS.folder, "images": source.num_examples, "mean_size": mean_hw.tolist(),
                       "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size, "cores": cores,
                       "gpu_images_per_second": FLAGS.gpu_images_per_second, "rows": rows}, f, indent=2)
        print(f"wrote {FLAGS.json}")
    return rows


def main(argv):
    del argv
    from mixmask_tf import data

    if FLAGS.folder:
        time_folder()
        return

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
