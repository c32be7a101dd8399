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

**Photographs at ImageNet sizes** (``--folder``): times two-view pipelines on an image folder of
JPEGs, in images/s and images/s per core (``os.sched_getaffinity``), each of ``--folder_modes``
once per round, ``--rounds`` rounds interleaved (A B C ... A B C ...: a shared machine's load falls
on all alike), every round printed, then per pipeline the median per core and the cores of this
kind a ResNet-50 MoCo v2 step on one GPU would need (--gpu_images_per_second: the step's rate, see
its help for the source). The pipelines:

* ``full_image``: this project's host mode (``augment_on="host"``, the default for files: each
  view's crop drawn on the full image, only that window decoded, the whole recipe on the CPU);
* ``centre_square``: what file sources did before (decode the whole file, resize its shorter side
  to --image_size, cut the centre square, crop inside it); ``default``: the checkout's default;
* ``host_share``: the device mode's host share (``augment_on="device"``: each view's crop, uint8,
  packed with its parameters; the rest runs in the train step);
* ``host_share_decode_once``: those crops with another of ``ops.decode_resized_crops_uint8``'s
  choices of how to decode an image's windows (``--decode_once``: ``always`` by default, the union
  of the windows decoded once; ``never``: each window on its own; ``host_share`` is ``cheaper``,
  the library's choice);
* ``tf_minimal``: a minimal tf.data pipeline written without this project (decode_and_crop_jpeg +
  antialiased resize + flip, uint8, one map per file);
* ``torchvision_mocov2``, ``torchvision_crop_flip``: torchvision + PIL
  (``benchmarks/torchvision_pipeline.py``), run in a subprocess with ``--torch_python``, the
  interpreter of a venv with torchvision (never imported here); left out, with a note, without it.

``--make_photos=N`` first writes such a folder: N JPEGs cut at ImageNet's common sizes (500x375,
375x500, 500x333, 333x500, 500x500; quality 90) from real photographs without resampling:
matplotlib's sample photo ``grace_hopper.jpg`` (512x600, shipped with matplotlib, a dependency),
and any further photos given with --photos.

    python -m benchmarks.input_pipeline --folder=/tmp/photos --make_photos=512 --augments=mocov2 \
        --image_size=224 --batch_size=64 --batches=8 --warmup=2 --rounds=3 \
        --folder_modes=full_image,host_share,tf_minimal,torchvision_mocov2,torchvision_crop_flip \
        --torch_python=/path/to/torchvision-venv/bin/python
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
                  "--folder: the pipelines to time, each round in this order (see the module docstring): full_image, "
                  "centre_square, default (make_pretrain_dataset's default in this checkout: run this file from an "
                  "older checkout to time what it did), host_share, host_share_decode_once, tf_minimal, "
                  "torchvision_mocov2, torchvision_crop_flip.")
flags.DEFINE_integer("rounds", 1, "--folder: time every pipeline of --folder_modes this many times, interleaved "
                     "(A B C A B C ...).")
flags.DEFINE_string("torch_python", None, "--folder: the Python interpreter of a venv with torchvision, for the "
                    "torchvision_* pipelines (run in a subprocess; never imported here). Unset: those pipelines "
                    "are left out with a note.")
flags.DEFINE_enum("decode_once", "always", ["cheaper", "always", "never"],
                  "--folder, host_share_decode_once: ops.decode_resized_crops_uint8's decode_once.")
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


class DecodeOnceHostShare:
    """A ``view_fn`` whose ``batch_encoded`` makes the device mode's host share's crops with one
    choice of ``ops.decode_resized_crops_uint8``'s ``decode_once`` (the union of an image's windows
    decoded once, each window on its own, or whichever is cheaper, the library's choice): uint8
    [B, V, H', W', C], the crops of ``TwoViewAugment.batch_encoded``'s draws, without the finish
    parameters (a few bytes per image) or their packing (``host_share_decode_once``)."""

    def __init__(self, views, decode_once="always"):
        self.views = views
        self.decode_once = decode_once

    def batch_encoded(self, contents, sizes, seed, channels, rows=None):
        import tensorflow as tf

        from mixmask_tf import seeds
        from mixmask_tf.augment import ops, views as view_ops

        sub = seeds.split(seed, self.views.num_views)
        params = [view_ops.sample_view_params(sub[v], tf.shape(contents)[0], sizes[:, 0], sizes[:, 1], channels,
                                              config) for v, config in enumerate(self.views.configs)]
        boxes = [tf.stack([p[k] for p in params], axis=1) for k in ("top", "left", "crop_h", "crop_w")]
        return ops.decode_resized_crops_uint8(contents, *boxes, self.views.output_size, channels, self.decode_once)


def host_share_rate(source, preset, batch_size, batches, warmup, decode_once=None):
    """Images per second of the device mode's host share from a folder: the checkout's
    ``make_pretrain_dataset(..., augment_on="device")`` (decode_once None), or
    :class:`DecodeOnceHostShare` with ``decode_once``."""
    from mixmask_tf import augment, data

    size = source.info.image_shape[0]
    views = augment.TwoViewAugment.from_preset(preset, size, 3, source.info.mean, source.info.std)
    if decode_once is None:
        dataset = data.make_pretrain_dataset(source, batch_size, views, seed=0, start_epoch=0, full_image=True,
                                             augment_on="device")
    else:
        dataset = data.make_pretrain_dataset(source, batch_size, DecodeOnceHostShare(views, decode_once), seed=0,
                                             start_epoch=0, full_image=True)
    return images_per_second(dataset, batch_size, batches, warmup)


def minimal_tf_data(paths, batch_size, image_size, seed=0):
    """The minimal tf.data pipeline of a two-view recipe, independent of this project: per file,
    two views of ``decode_and_crop_jpeg`` of a window from ``stateless_sample_distorted_bounding_box``
    (area 0.2-1 of the image, aspect 3/4-4/3, 10 attempts), antialiased bilinear resize, random
    flip, rounded to uint8; one ``map`` per file, batched, prefetched. uint8 [B, 2, S, S, 3]."""
    import tensorflow as tf

    def views(i, path):
        contents = tf.io.read_file(path)
        shape = tf.image.extract_jpeg_shape(contents)
        out = []
        for v in range(2):
            key = tf.random.experimental.stateless_fold_in(tf.constant([seed, v], tf.int64), i)
            begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, tf.zeros([0, 0, 4]), seed=key, area_range=(0.2, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                max_attempts=10, use_image_if_no_bounding_boxes=True)
            window = tf.image.decode_and_crop_jpeg(contents, tf.stack([begin[0], begin[1], extent[0], extent[1]]),
                                                   channels=3)
            image = tf.image.resize(window, [image_size, image_size], method="bilinear", antialias=True)
            image = tf.image.stateless_random_flip_left_right(image, key)
            out.append(tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8))
        return tf.stack(out)

    files = tf.data.Dataset.from_tensor_slices(list(paths)).shuffle(len(paths), seed=seed,
                                                                       reshuffle_each_iteration=True).repeat()
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(1 << 62), files)
    ds = ds.map(views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def torchvision_rate(recipe, folder, image_size, batch_size, batches, warmup):
    """Images per second of a torchvision + PIL pipeline (benchmarks.torchvision_pipeline), run
    with --torch_python in a subprocess; (rate, versions)."""
    import subprocess
    import sys

    command = [FLAGS.torch_python, "-m", "benchmarks.torchvision_pipeline", f"--folder={folder}",
               f"--recipe={recipe}", f"--image_size={image_size}", f"--batch_size={batch_size}",
               f"--batches={batches}", f"--warmup={warmup}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"{' '.join(command)} failed with exit code {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["images_per_second"], result["versions"]


FOLDER_PIPELINES = {
    "full_image": "this project, host mode (augment_on=host, full-image crops, the whole recipe)",
    "centre_square": "this project, host mode, centre square (decode all, resize, crop inside)",
    "default": "this project, make_pretrain_dataset's default",
    "host_share": "this project, device mode's host share (augment_on=device: crops, uint8, packed)",
    "host_share_decode_once": "the host share's crops with another decode_once (--decode_once, default always)",
    "tf_minimal": "minimal tf.data: decode_and_crop_jpeg + antialiased resize + flip, uint8",
    "torchvision_mocov2": "torchvision + PIL, MoCo v2 recipe, DataLoader (workers = cores)",
    "torchvision_crop_flip": "torchvision + PIL, RandomResizedCrop + flip + normalise",
}


def time_folder():
    import statistics

    import numpy as np
    import tensorflow as tf

    from mixmask_tf import data

    modes = list(FLAGS.folder_modes)
    unknown = set(modes) - set(FOLDER_PIPELINES)
    if unknown or not modes:
        raise app.UsageError(f"--folder_modes takes {', '.join(FOLDER_PIPELINES)}; got {','.join(modes)}", 2)
    if FLAGS.rounds < 1:
        raise app.UsageError(f"--rounds must be >= 1, got {FLAGS.rounds}", 2)
    torch_modes = [m for m in modes if m.startswith("torchvision_")]
    if torch_modes and not FLAGS.torch_python:
        print(f"note: {', '.join(torch_modes)} left out: no --torch_python (a venv with torchvision)", flush=True)
        modes = [m for m in modes if m not in torch_modes]
    if FLAGS.make_photos:
        make_photo_folder(FLAGS.folder, FLAGS.make_photos, FLAGS.photos)
    source = data.open_source("folder", "train", data_dir=FLAGS.folder, image_size=FLAGS.image_size, verify=False)
    cores = len(os.sched_getaffinity(0))
    sizes = [tf.io.extract_jpeg_shape(tf.io.read_file(path)).numpy()[:2] for path in source.paths[:200]]
    mean_hw = np.mean(sizes, axis=0)
    print(f"{FLAGS.folder}: {source.num_examples} JPEGs, mean size {mean_hw[0]:.0f}x{mean_hw[1]:.0f} (h x w), "
          f"crops {FLAGS.image_size}, batch {FLAGS.batch_size}, {FLAGS.batches} timed batches after {FLAGS.warmup}, "
          f"{cores} cores, {FLAGS.rounds} round(s)", flush=True)
    presets = FLAGS.augments if FLAGS["augments"].present else ["mocov2"]
    full = {"full_image": True, "centre_square": False, "default": None}
    rows, versions = [], {}
    for preset in presets:
        rates = {mode: [] for mode in modes}
        for round_ in range(1, FLAGS.rounds + 1):
            for mode in modes:
                if mode in full:
                    rate = folder_rate(source, preset, FLAGS.batch_size, FLAGS.batches, FLAGS.warmup, full[mode])
                elif mode.startswith("host_share"):
                    rate = host_share_rate(source, preset, FLAGS.batch_size, FLAGS.batches, FLAGS.warmup,
                                           FLAGS.decode_once if mode == "host_share_decode_once" else None)
                elif mode == "tf_minimal":
                    rate = images_per_second(minimal_tf_data(source.paths, FLAGS.batch_size, FLAGS.image_size),
                                             FLAGS.batch_size, FLAGS.batches, FLAGS.warmup)
                else:
                    rate, versions = torchvision_rate(mode[len("torchvision_"):], FLAGS.folder, FLAGS.image_size,
                                                      FLAGS.batch_size, FLAGS.batches, FLAGS.warmup)
                rates[mode].append(rate)
                print(f"round {round_} {preset:8s} {mode:22s} {rate:7.1f} images/s (two views each), "
                      f"{rate / cores:6.1f} per core", flush=True)
        print(f"{preset}: images/s per core, every round; median; cores of this kind per GPU step at "
              f"{FLAGS.gpu_images_per_second:.0f} images/s", flush=True)
        for mode in modes:
            per_core = [r / cores for r in rates[mode]]
            median = statistics.median(per_core)
            need = FLAGS.gpu_images_per_second / median
            rows.append({"preset": preset, "mode": mode, "pipeline": FOLDER_PIPELINES[mode],
                         "images_per_second": rates[mode], "images_per_second_per_core": per_core,
                         "median_per_core": median, "cores_for_one_gpu": need})
            print(f"  {mode:22s} " + " ".join(f"{r:6.1f}" for r in per_core)
                  + f" | median {median:6.1f} | {need:4.0f} cores  ({FOLDER_PIPELINES[mode]})", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"folder": FLAGS.folder, "images": source.num_examples, "mean_size": mean_hw.tolist(),
                       "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size, "batches": FLAGS.batches,
                       "warmup": FLAGS.warmup, "rounds": FLAGS.rounds, "cores": cores,
                       "decode_once": FLAGS.decode_once, "torchvision_versions": versions,
                       "load_average": os.getloadavg(), "gpu_images_per_second": FLAGS.gpu_images_per_second,
                       "rows": rows}, f, indent=2)
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
            # The rows given finished views (the host mode, which this pipeline feeds).
            if row["image_shape"] != shape or row.get("augment_on", "host") != "host":
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
