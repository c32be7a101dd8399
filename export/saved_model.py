"""Exports a pretrained backbone as a versioned SavedModel that TensorFlow Serving loads.

    python -m export.saved_model --model_dir /tmp/mixmask_demo --export_dir /tmp/mixmask_demo/export

Layout (TF Serving's): `<export_dir>/<version>/saved_model.pb`, `variables/`, and in
`assets.extra/` (which the model server ignores) the backbone as `backbone.keras` and the
model card `export.json`. A version folder is written under a temporary name and renamed
into place, so a half-written version is never visible to a model server.

Signature `serving_default`: input `images` uint8 [None, H, W, C] at the training resolution;
output `embedding` float32 [None, F] (backbone features; L2-normalise them for cosine search).
Scaling to [0, 1] and the dataset's mean/std normalisation happen inside the graph.
"""

import json
import os
import shutil
import sys
import uuid

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

SIGNATURE_INPUT = "images"
SIGNATURE_OUTPUT = "embedding"


def next_version(export_dir):
    """1 + the largest integer version folder in `export_dir` (1 when there is none)."""
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(d) for d in os.listdir(export_dir) if d.isdigit()]
    return max(versions, default=0) + 1


def export_backbone(backbone, export_dir, mean, std, version=None, metadata=None):
    """Writes `backbone` as `<export_dir>/<version>/` atomically.

    Args:
      backbone: Keras model float images [N, H, W, C] (normalised) -> features [N, F].
      export_dir: the model's base folder (TF Serving's `--model_base_path`).
      mean, std: per-channel normalisation in [0, 1] pixel units, applied in the graph.
      version: integer version; None = next free number.
      metadata: dict written into the model card `assets.extra/export.json`.

    Returns:
      the path of the written version folder.

    Raises:
      FileExistsError: that version already exists.
    """
    height, width, channels = (int(d) for d in backbone.input_shape[1:])
    version = next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"export version {final} already exists; pick another --version")
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name=SIGNATURE_INPUT)])
    def serve(images):
        x = (tf.cast(images, tf.float32) / 255.0 - mean) / std
        return {SIGNATURE_OUTPUT: tf.cast(backbone(x, training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.add_endpoint("serve", serve)  # the first endpoint is also `serving_default`
    os.makedirs(export_dir, exist_ok=True)
    tmp = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(tmp, verbose=False)
        extra = os.path.join(tmp, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        backbone.save(os.path.join(extra, "backbone.keras"))
        card = {"signature": "serving_default", "input": {"name": SIGNATURE_INPUT, "dtype": "uint8",
                                                          "shape": [None, height, width, channels]},
                "output": {"name": SIGNATURE_OUTPUT, "dtype": "float32",
                           "shape": [None, int(backbone.output_shape[-1])]},
                "embedding_dim": int(backbone.output_shape[-1]),
                "normalization": {"mean": [float(v) for v in mean.numpy().ravel()],
                                  "std": [float(v) for v in std.numpy().ravel()]},
                **(metadata or {})}
        with open(os.path.join(extra, "export.json"), "w") as f:
            json.dump(card, f, indent=2)
        os.rename(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def export_from_model_dir(model_dir, export_dir, version=None):
    """Exports the backbone of the last checkpoint of a pretraining run in `model_dir`."""
    config_path = os.path.join(model_dir, "config.json")
    backbone_path = os.path.join(model_dir, "backbone.keras")
    for path in (config_path, backbone_path):
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: is {model_dir} the --model_dir of a pretraining run that finished an epoch?")
    with open(config_path) as f:
        config = json.load(f)
    backbone = keras.models.load_model(backbone_path, compile=False)
    results = {}
    results_path = os.path.join(model_dir, "results.json")
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)
    metadata = {"framework": config.get("framework"), "branch": config.get("branch"),
                "dataset": config.get("dataset"), "backbone": config.get("backbone"),
                "epochs": results.get("epochs_completed"), "knn_top1": results.get("knn_top1"),
                "model_dir": os.path.abspath(model_dir)}
    return export_backbone(backbone, export_dir, config["mean"], config["std"], version=version, metadata=metadata)


def main(argv):
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        path = export_from_model_dir(f.model_dir, f.export_dir or os.path.join(f.model_dir, "export"), f.version)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"exported SavedModel to {path}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("model_dir", None, "Model directory of a pretraining run.", required=True)
    flags.DEFINE_string("export_dir", None, "Base folder of the versioned export (default <model_dir>/export).")
    flags.DEFINE_integer("version", None, "Version number (default: next free number).")
    app.run(main)
