"""Exports a pretrained backbone as a versioned SavedModel that TensorFlow Serving loads.

    python -m export.saved_model --model_dir /tmp/mixmask_demo --export_dir /tmp/mixmask_demo/export

Layout (TF Serving's): `<export_dir>/<version>/saved_model.pb`, `variables/`, and in
`assets.extra/` (which the model server ignores) the backbone as `backbone.keras` and the
model card `export.json`. A version is written into a hidden temporary folder
(`<export_dir>/.tmp-export-<host>-<pid>-<hex>`) and renamed into place, so a half-written
version is never visible to a model server; only folders named by digits count as versions.

Signatures (all `tensorflow/serving/predict`, tag `serve`):

* `serving_default`: input `images`, uint8 [N, H', W', C] (any N, any H' x W', C = the training
  channel count). Images at the training resolution H x W go straight through; any other size
  is conformed in the graph as the training data were (:func:`conform_batch`: the image is
  scaled so that it covers H x W -- for square training images, the shorter side becomes H --
  bilinear with antialiasing, rounded to uint8, then the centre H x W window is cropped).
* `serve_bytes`: input `image_bytes`, string [N]: one encoded JPEG/PNG/GIF/BMP per element, any
  sizes. Each is decoded in the graph (`tf.io.decode_image(channels=C,
  expand_animations=False)`, as the training pipeline reads image files), conformed to H x W,
  then handled as `serving_default`. Pixel budget: each image's header is read first
  (`mixmask_tf.data.image_header`) and an image declaring more than `max_image_pixels` pixels
  (default 89478485, Pillow's limit; set at export, in the model card) is refused, undecoded,
  with InvalidArgumentError; the images of a request are decoded one at a time.
* `tflite` (:data:`TFLITE`): input `pixels`, float32 [N, H, W, C]: pixel values in [0, 255]
  (uint8 images cast to float32) at exactly the training size, N >= 1. No resize, no decoding,
  float32 throughout: built from TensorFlow Lite builtin ops only, for
  `python -m export.tflite` (`tf.lite.TFLiteConverter` cannot convert the other two: their
  antialiased resize is `ScaleAndTranslate`, and they use float64 arithmetic and `EnsureShape`).
  The shape is declared, not checked when called: the loaded TF signature and TF Lite's
  signature runner (which resizes its input to whatever it gets) both run other sizes, and a
  global-pooling backbone then returns an embedding without an error. Send exactly [N, H, W, C].

All output `embedding`, float32 [N, F] (backbone features; L2-normalise them for cosine
search). Scaling to [0, 1] and the dataset's mean/std normalisation happen inside the graph:
`(images / 255 - mean) / std` in float32, then, for a run trained with an input filter (MSCN's
high-pass, `mixmask_tf.ops.filters`: `x - GaussianBlur(x)`, reflect padding, depthwise convolutions,
TF Lite builtins), the filter, then `backbone(x, training=False)`; on the same pixels the three
signatures compute the same embedding. `assets.extra/backbone.keras` is the raw backbone (no filter);
the model card records the filter under `"input_filter"` (null without one).
"""

import contextlib
import datetime
import json
import os
import re
import socket
import sys
import tempfile
import uuid

# Run as the command (`python -m export.saved_model`, or the console script `mixmask-export`, whose
# wrapper imports this module as `mixmask_tf.export.saved_model`): quiet TensorFlow's C++ start-up
# logging before TensorFlow is imported. Imported as a library, the environment is left alone.
if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "mixmask-export":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from mixmask_tf import batchnorm  # noqa: F401  (registers the backbones' BatchNorm for load_model)
from mixmask_tf import checkpoint
from mixmask_tf import data
from mixmask_tf.data import image_header
from mixmask_tf.ops import filters

gfile = tf.io.gfile

SIGNATURE_INPUT = "images"
SIGNATURE_BYTES_INPUT = "image_bytes"
SIGNATURE_OUTPUT = "embedding"
SERVING_DEFAULT = "serving_default"
SERVE_BYTES = "serve_bytes"
# The signature for TensorFlow Lite (`python -m export.tflite`): float32 pixels at the training size.
TFLITE = "tflite"
SIGNATURE_TFLITE_INPUT = "pixels"
PREDICT_METHOD = "tensorflow/serving/predict"
RESIZE_RULE = ("images are scaled by max(H / height, W / width) / crop_ratio (for square training images: the "
               "shorter side becomes H / crop_ratio), bilinear with antialiasing (tf.image.resize), rounded and "
               "clipped to uint8, then the centre H x W window is cropped; the same rule as "
               "mixmask_tf.data.conform_image, i.e. the evaluation transform. With crop_ratio 1, images already at "
               "H x W are used as they are")

_VERSION_RE = re.compile(r"^[0-9]+$")
_TMP_PREFIX = ".tmp-export-"
_TMP_RE = re.compile(r"^\.tmp-export-(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{8}$")


def list_versions(export_dir):
    """Sorted integer versions of `export_dir`: its sub-folders named only by ASCII digits.

    Hidden temporary folders (`.tmp-export-...`, left by an export that was killed) and any
    other names never count.
    """
    if not gfile.isdir(export_dir):
        return []
    return sorted(int(d) for d in _listdir(export_dir)
                  if _VERSION_RE.match(d) and gfile.isdir(os.path.join(export_dir, d)))


def next_version(export_dir):
    """1 + the largest integer version folder in `export_dir` (1 when there is none)."""
    return max(list_versions(export_dir), default=0) + 1


def _listdir(folder):
    """Entry names of a folder (gs:// lists sub-folders with a trailing "/")."""
    return [name.rstrip("/") for name in gfile.listdir(folder)]


def _rmtree(folder):
    try:
        gfile.rmtree(folder)
    except (OSError, tf.errors.OpError):
        logging.warning("could not remove %s", folder)


def _move_folder(tmp, final):
    """Puts the finished export in place: a rename on a local disk (atomic); on object stores
    (gs://, ram://), where a folder cannot be renamed, a copy of every file with `saved_model.pb`
    last (TensorFlow Serving loads a version only once that file exists), then the temporary
    folder is removed."""
    if "://" not in tmp:
        gfile.rename(tmp, final)
        return
    # (ram:// lists a folder "assets" as holding ".extra" when "assets.extra" exists: names that
    # do not exist as files are skipped.)
    files = [os.path.join(root, name)[len(tmp) + 1:] for root, _, names in gfile.walk(tmp) for name in names
             if gfile.exists(os.path.join(root, name)) and not gfile.isdir(os.path.join(root, name))]
    files.sort(key=lambda f: f == "saved_model.pb")
    for rel in files:
        target = os.path.join(final, rel)
        gfile.makedirs(os.path.dirname(target))
        gfile.copy(os.path.join(tmp, rel), target, overwrite=False)
    _rmtree(tmp)


def load_keras(path):
    """`keras.models.load_model(path)` for any `tf.io.gfile` path (a remote file is copied locally first)."""
    if "://" not in path:
        return keras.models.load_model(path, compile=False)
    fd, local = tempfile.mkstemp(suffix=".keras")
    os.close(fd)
    try:
        gfile.copy(path, local, overwrite=True)
        return keras.models.load_model(local, compile=False)
    finally:
        os.remove(local)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(export_dir):
    """Deletes temporary folders of exports that died on this host (their process is gone).

    Only `.tmp-export-<this host>-<pid>-<hex>` folders whose `<pid>` no longer runs are removed,
    so a concurrent export (here or on another host sharing the folder) is never disturbed.

    Returns:
      the names of the removed folders.
    """
    removed = []
    if not gfile.isdir(export_dir):
        return removed
    host = socket.gethostname()
    for name in _listdir(export_dir):
        match = _TMP_RE.match(name)
        if match and match["host"] == host and not _pid_alive(int(match["pid"])):
            _rmtree(os.path.join(export_dir, name))
            removed.append(name)
    return removed


def conform_batch(images, height, width, crop_ratio=1.0):
    """Brings a batch of images to `height` x `width` by the evaluation rule, in the graph.

    The batched, graph-mode form of `mixmask_tf.data.conform_image` (size only; the channel count
    must already be right). Every image is scaled by `s = max(height / h, width / w) /
    crop_ratio` to `max(height, round(h * s))` x `max(width, round(w * s))` (bilinear,
    antialias), rounded and clipped to uint8, and the centre `height` x `width` window is cropped
    (for square targets: "resize the shorter side to height / crop_ratio, then centre-crop",
    exactly `conform_image`). With crop_ratio 1 a batch already at `height` x `width` is
    returned unchanged.

    Args:
      images: uint8 [N, h, w, C] (N, h, w may be dynamic; C static; h, w >= 1).
      height, width: the output size (Python ints).
      crop_ratio: the centre crop's share of the resized shorter side, in (0, 1] (the run's
        evaluation crop ratio: 0.875 for image folders and streamed tfds splits by default, 1
        for in-memory datasets).

    Returns:
      uint8 [N, height, width, C].
    """
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    shape = tf.shape(images)
    h, w = shape[1], shape[2]

    crop_ratio = data.check_crop_ratio(crop_ratio)

    def resize():
        check = tf.debugging.assert_positive(tf.minimum(h, w), message="images must be at least 1 x 1 pixels")
        with tf.control_dependencies([check]):
            return data.resize_cover_crop(images, height, width, crop_ratio)

    if crop_ratio < 1.0:
        return tf.ensure_shape(resize(), [None, height, width, channels])
    if images.shape[1] == height and images.shape[2] == width:
        return images
    same = tf.logical_and(tf.equal(h, height), tf.equal(w, width))
    out = tf.cond(same, lambda: tf.identity(images), resize)
    return tf.ensure_shape(out, [None, height, width, channels])


def _spec(dtype, shape):
    return {"dtype": dtype, "shape": list(shape)}


def _layers(layer):
    """`layer` and every layer nested in it."""
    yield layer
    for inner in getattr(layer, "layers", None) or []:
        yield from _layers(inner)


@contextlib.contextmanager
def _float32_compute(model):
    """Within: every layer of `model` computes in float32 (what is traced inside uses the same
    variables, float32 under the mixed policies). A backbone trained with `mixed_bfloat16` or
    `mixed_float16` otherwise traces bfloat16/float16 convolutions, which are not TF Lite
    builtins. The layers' own dtype policies are restored on exit."""
    changed = [(layer, layer.dtype_policy) for layer in _layers(model)
               if layer.dtype_policy.compute_dtype != "float32"]
    try:
        for layer, _ in changed:
            layer.dtype_policy = "float32"
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def export_backbone(backbone, export_dir, mean, std, version=None, metadata=None, crop_ratio=1.0,
                    input_filter=None, max_image_pixels=image_header.DEFAULT_MAX_IMAGE_PIXELS):
    """Writes `backbone` as the SavedModel `<export_dir>/<version>/`, atomically.

    Signatures (see the module docstring): `serving_default` (`images` uint8 [N, H', W', C] ->
    `embedding` float32 [N, F]), `serve_bytes` (`image_bytes` string [N] -> `embedding`) and
    `tflite` (`pixels` float32 [N, H, W, C] in [0, 255] -> `embedding`; TF Lite builtin ops only).
    The version is first written to a hidden `.tmp-export-...` folder, then renamed; temporary
    folders of dead exports on this host are removed first.

    Args:
      backbone: Keras model, float images [N, H, W, C] (normalised) -> features [N, F], with a
        static H, W and C in {1, 3}.
      export_dir: the model's base folder (TF Serving's `--model_base_path`).
      mean, std: C per-channel values in [0, 1] pixel units, applied in the graph.
      version: integer version; None = the next free number.
      metadata: dict merged into the model card `assets.extra/export.json` (the keys the exporter
        computes -- signatures, shapes, normalisation, versions -- take precedence).
      crop_ratio: the evaluation centre-crop ratio the serving signatures resize with (see
        :func:`conform_batch`; recorded in the model card).
      input_filter: the run's input filter (`filters.HighPassFilter` or its dict, e.g.
        `config.json`'s "input_filter"), applied in every signature after normalisation; None for none.
        Recorded in the model card; `assets.extra/backbone.keras` stays the raw backbone.
      max_image_pixels: `serve_bytes`' pixel budget: an image whose header declares more pixels
        (`mixmask_tf.data.image_header.declared_size`) is refused before it is decoded
        (InvalidArgumentError naming its size and the budget). Default: Pillow's
        decompression-bomb limit, 89478485. Recorded in the model card.

    Returns:
      the path of the written version folder.

    Raises:
      FileExistsError: that version already exists.
      ValueError: bad backbone input shape, mean/std length or std <= 0, an input filter the
        images cannot take, or a pixel budget that is not a positive integer.
    """
    input_shape = tuple(backbone.input_shape[1:])
    if len(input_shape) != 3 or any(d is None for d in input_shape) or input_shape[-1] not in (1, 3):
        raise ValueError(f"the backbone must take images [N, H, W, C] with static H, W and C in (1, 3); "
                         f"its input shape is {backbone.input_shape}")
    height, width, channels = (int(d) for d in input_shape)
    mean = [float(v) for v in np.asarray(mean, np.float64).reshape(-1)]
    std = [float(v) for v in np.asarray(std, np.float64).reshape(-1)]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values (one per channel), got {mean} and {std}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {std}")
    if version is not None:
        version = int(version)
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        if gfile.exists(os.path.join(export_dir, str(version))):
            raise FileExistsError(f"export version {os.path.join(export_dir, str(version))} already exists; "
                                  f"pick another --version")
    crop_ratio = data.check_crop_ratio(crop_ratio)
    max_image_pixels = image_header.check_max_pixels(max_image_pixels)
    input_filter = filters.from_config(input_filter)
    if input_filter is not None:
        input_filter.validate(input_shape)
    embedding_dim = int(backbone.output_shape[-1])
    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)

    def features(pixels):
        """float32 pixel values [N, H, W, C] in [0, 255] -> float32 [N, F] (float32 ops only)."""
        x = (pixels / 255.0 - mean_t) / std_t
        if input_filter is not None:
            x = input_filter(x)
        return tf.cast(backbone(x, training=False), tf.float32)

    def embed(images):
        """uint8 [N, H, W, C] -> float32 [N, F]; an empty batch gives [0, F]."""
        pixels = tf.cast(images, tf.float32)
        return tf.cond(tf.shape(pixels)[0] > 0,
                       lambda: features(pixels),
                       lambda: tf.zeros([0, embedding_dim], tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8,
                                                name=SIGNATURE_INPUT)])
    def serving_default(images):
        # A signature's input shape is not enforced when it is called: check rank and channels
        # ("Shape of tensor images [2,28,28,3] is not compatible with expected shape [?,?,?,1]").
        images = tf.ensure_shape(images, [None, None, None, channels], name=SIGNATURE_INPUT)
        return {SIGNATURE_OUTPUT: embed(conform_batch(images, height, width, crop_ratio))}

    def decode(args):
        encoded, index = args
        # The pixel budget: the header's declared size is checked before the decoder runs.
        encoded = image_header.check_pixel_budget(
            encoded, max_image_pixels, tf.strings.format("image_bytes[{}]", [index]))
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image.set_shape([None, None, channels])
        return conform_batch(image[tf.newaxis], height, width, crop_ratio)[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURE_BYTES_INPUT)])
    def serve_bytes(image_bytes):
        image_bytes = tf.ensure_shape(image_bytes, [None], name=SIGNATURE_BYTES_INPUT)
        # One image at a time (parallel_iterations=1): a request's peak memory is that of its
        # largest image, which the pixel budget bounds, not the sum over the request.
        images = tf.map_fn(decode, (image_bytes, tf.range(tf.shape(image_bytes)[0])),
                           fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8),
                           parallel_iterations=1)
        return {SIGNATURE_OUTPUT: embed(images)}

    # For TensorFlow Lite: TFLite builtin ops only (no EnsureShape, no resize, no float64, no
    # tf.cond), float32 compute even for a mixed-precision backbone. The input shape is declared
    # only: both converters fold shape checks against it.
    @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32,
                                                name=SIGNATURE_TFLITE_INPUT)])
    def tflite(pixels):
        return {SIGNATURE_OUTPUT: features(pixels)}

    with _float32_compute(backbone):
        tflite.get_concrete_function()  # traced here, in float32, and kept

    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.add_endpoint(SERVING_DEFAULT, serving_default)
    archive.add_endpoint(SERVE_BYTES, serve_bytes)
    archive.add_endpoint(TFLITE, tflite)

    output = _spec("float32", [None, embedding_dim])
    card = {"framework": None, "branch": None, "dataset": None, "epochs": None,
            "knn_top1": None, "knn_top1_random_init": None, "backbone": backbone.name,
            **(metadata or {}),
            "embedding_dim": embedding_dim,
            "image_shape": [height, width, channels],
            # The `images` input at the training resolution (no resize); other sizes: "resize".
            "input": {"name": SIGNATURE_INPUT, **_spec("uint8", [None, height, width, channels])},
            "output": {"name": SIGNATURE_OUTPUT, **output},
            "signatures": {
                SERVING_DEFAULT: {"method": PREDICT_METHOD,
                                  "inputs": {SIGNATURE_INPUT: _spec("uint8", [None, None, None, channels])},
                                  "outputs": {SIGNATURE_OUTPUT: output}},
                SERVE_BYTES: {"method": PREDICT_METHOD,
                              "inputs": {SIGNATURE_BYTES_INPUT: {
                                  **_spec("string", [None]),
                                  "content": f"one encoded JPEG/PNG/GIF/BMP/WebP image per element, any size up "
                                             f"to max_image_pixels ({max_image_pixels}) declared pixels, "
                                             f"decoded to {channels} channel(s)"}},
                              "outputs": {SIGNATURE_OUTPUT: output}},
                TFLITE: {"method": PREDICT_METHOD,
                         "inputs": {SIGNATURE_TFLITE_INPUT: {
                             **_spec("float32", [None, height, width, channels]),
                             "content": f"pixel values in [0, 255] (uint8 images cast to float32) at exactly "
                                        f"{height} x {width} x {channels}, no resize; N >= 1 (TF Lite cannot run an empty batch)"}},
                         "outputs": {SIGNATURE_OUTPUT: output},
                         "convert": "python -m export.tflite --saved_model=<this version folder> "
                                    "--output=model.tflite (TF Lite builtin ops only)"}},
            "normalization": {"mean": mean, "std": std, "formula": "(uint8 / 255 - mean) / std" + (
                ", then input_filter: x - GaussianBlur(x)" if input_filter is not None else "")},
            "input_filter": input_filter.as_dict() if input_filter is not None else None,
            # serve_bytes refuses, before decoding, an image whose header declares more pixels.
            "max_image_pixels": max_image_pixels,
            "resize": {"rule": RESIZE_RULE, "method": "bilinear", "antialias": True,
                       "target": [height, width], "crop_ratio": crop_ratio},
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__}

    gfile.makedirs(export_dir)
    remove_stale_tmp(export_dir)
    tmp = os.path.join(export_dir, f"{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(tmp, verbose=False)
        extra = os.path.join(tmp, "assets.extra")
        gfile.makedirs(extra)
        checkpoint.atomic_save_keras(backbone, os.path.join(extra, "backbone.keras"))
        checkpoint.atomic_write_text(os.path.join(extra, "export.json"), json.dumps(card, indent=2))
        number = next_version(export_dir) if version is None else version
        while True:
            final = os.path.join(export_dir, str(number))
            if not gfile.exists(final):
                try:
                    _move_folder(tmp, final)
                    break
                except (OSError, tf.errors.OpError):
                    if not gfile.exists(final) or "://" in final:
                        raise
            if version is not None:
                raise FileExistsError(f"export version {final} already exists; pick another --version")
            number += 1  # another export took that number meanwhile
    finally:
        if gfile.exists(tmp):
            _rmtree(tmp)
    return final


_EVAL_KEYS = ("knn_feature", "knn_top1", "knn_top5", "linear_top1", "linear_top5", "finetune_top1", "finetune_top5",
              "probe_top1", "probe_top5", "protocol", "label_fraction", "k", "temperature")


def _evaluations(model_dir, results):
    """The run's evaluation results for the model card: `<model_dir>/eval/*.json` of the last epoch.

    Results of an earlier checkpoint (`--checkpoint`) or of a control are left out; so is a file
    that was written before the run trained further (fewer epochs than the run has now).
    """
    found = {}
    folder = os.path.join(model_dir, "eval")
    if not gfile.isdir(folder):
        return found
    for name in sorted(_listdir(folder)):
        if not name.endswith(".json"):
            continue
        try:
            entry = json.loads(checkpoint.read_text(os.path.join(folder, name)))
        except (OSError, ValueError, tf.errors.OpError):
            continue
        encoder = entry.get("encoder") or {}
        if entry.get("checkpoint") or entry.get("control", "none") != "none" or encoder.get("source") != "run":
            continue
        if results.get("epochs_completed") is not None and encoder.get("epochs") != results["epochs_completed"]:
            continue
        summary = {k: entry[k] for k in _EVAL_KEYS if entry.get(k) is not None}
        summary.update(dataset=entry.get("dataset"), test_split=entry.get("test_split"),
                       command="trainers." + next(c for p, c in (("knn", "knn_eval"), ("linear", "linear_eval"),
                                                                   ("finetune", "finetune"), ("", "?"))
                                                     if name.startswith(p)))
        found[name[:-5]] = summary
    return found


def export_from_model_dir(model_dir, export_dir, version=None, max_image_pixels=image_header.DEFAULT_MAX_IMAGE_PIXELS):
    """Exports the backbone of the last checkpoint of a pretraining run in `model_dir`.

    `max_image_pixels` is `serve_bytes`' pixel budget (see :func:`export_backbone`).

    Reads `backbone.keras`, `config.json` (framework, branch, dataset, backbone, mean/std,
    image_shape, input_filter) and, when present, `results.json` (epochs, kNN accuracies) of the run.

    Returns:
      the path of the written version folder `<export_dir>/<version>`.
    """
    config_path = os.path.join(model_dir, "config.json")
    backbone_path = os.path.join(model_dir, "backbone.keras")
    for path in (config_path, backbone_path):
        if not gfile.exists(path):
            raise FileNotFoundError(
                f"{path} not found: is {model_dir} the --model_dir of a pretraining run that finished an epoch?")
    config = json.loads(checkpoint.read_text(config_path))
    backbone = load_keras(backbone_path)
    results = {}
    results_path = os.path.join(model_dir, "results.json")
    if gfile.exists(results_path):
        results = json.loads(checkpoint.read_text(results_path))
    if config.get("image_shape") and list(config["image_shape"]) != list(backbone.input_shape[1:]):
        raise ValueError(f"{backbone_path} takes {backbone.input_shape[1:]} images but {config_path} says "
                         f"image_shape {config['image_shape']}")
    metadata = {"framework": config.get("framework"), "branch": config.get("branch"),
                "dataset": config.get("dataset"), "backbone": config.get("backbone") or backbone.name,
                "epochs": results.get("epochs_completed"), "steps": results.get("steps_completed"),
                "knn_top1": results.get("knn_top1"),
                "knn_top1_random_init": results.get("knn_top1_random_init"),
                "knn_feature": results.get("knn_feature", "backbone"),
                "knn_k": results.get("knn_k"), "knn_t": results.get("knn_t"),
                "model_dir": model_dir if "://" in model_dir else os.path.abspath(model_dir), "evaluations": _evaluations(model_dir, results),
                # An imported run (trainers.import_checkpoint): its source file, SHA-256 and key prefix.
                "imported": config.get("imported")}
    return export_backbone(backbone, export_dir, config["mean"], config["std"], version=version, metadata=metadata,
                           crop_ratio=config.get("eval_crop_ratio", 1.0), input_filter=config.get("input_filter"),
                           max_image_pixels=max_image_pixels)


def main(argv):
    from absl import flags
    from absl import logging as absl_logging

    del argv
    absl_logging.set_verbosity(absl_logging.WARNING)  # no INFO lines from the SavedModel writer
    tf.get_logger().setLevel("WARNING")
    f = flags.FLAGS
    try:
        path = export_from_model_dir(f.model_dir, f.export_dir or os.path.join(f.model_dir, "export"), f.version,
                                     max_image_pixels=f.max_image_pixels)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"exported SavedModel to {path}")


def entry_point():
    """The command (`python -m export.saved_model`, or the console script `mixmask-export`)."""
    from absl import app, flags

    flags.DEFINE_string("model_dir", None, "Model directory of a pretraining run.", required=True)
    flags.DEFINE_string("export_dir", None, "Base folder of the versioned export (default <model_dir>/export).")
    flags.DEFINE_integer("version", None, "Version number (default: next free number).")
    flags.DEFINE_integer("max_image_pixels", image_header.DEFAULT_MAX_IMAGE_PIXELS,
                         "serve_bytes' pixel budget: an image whose header declares more pixels is refused before it "
                         "is decoded (recorded in the model card). Default: Pillow's MAX_IMAGE_PIXELS.")
    app.run(main)


if __name__ == "__main__":
    entry_point()
