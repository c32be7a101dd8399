"""Export: TF Serving layout and signature_defs, atomic versions (also under SIGKILL), model card,
and the signatures served in a fresh process that imports only TensorFlow (TF Lite: test_tflite.py)."""

import base64
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from image_folders import bombs, png_bomb

from export import saved_model
from mixmask_tf import backbones, data

MEAN, STD = (0.286,), (0.353,)
FEATURES = 16  # small_convnet(width=4): 4 * width
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
# The serving process cannot even find the project's packages (run outside the repo, no PYTHONPATH).
TF_ONLY_ENV = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}


def _photo(h, w, seed):
    """A smooth, photo-like grey image uint8 [h, w, 1]: waves, a bright disc, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    image = 120 + 60 * np.sin(7 * x + rng.uniform(0, 6)) * np.cos(5 * y + rng.uniform(0, 6))
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    image += 80 * (((y - cy) ** 2 + (x - cx) ** 2) < r ** 2) + rng.normal(0, 6, (h, w))
    return np.clip(image, 0, 255).astype(np.uint8)[..., None]


def _photos(n, h, w, seed):
    return np.stack([_photo(h, w, seed + i) for i in range(n)])


def _expected(backbone, images):
    """Independent reference: conform_image per image, then /255, mean/std, backbone."""
    conformed = np.stack([data.conform_image(image, size=28, channels=1).numpy() for image in images]) \
        if len(images) else np.zeros((0, 28, 28, 1), np.uint8)
    x = (conformed.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
    return np.asarray(backbone(x, training=False)) if len(images) else np.zeros((0, FEATURES), np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A pretraining run's model_dir with a 28x28x1 small_convnet, exported by export_from_model_dir."""
    keras.utils.set_random_seed(0)
    model_dir = tmp_path_factory.mktemp("run")
    backbone = backbones.small_convnet((28, 28, 1), width=4)
    # Non-trivial BatchNorm statistics, so normalisation mistakes show in the embeddings.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.2, 0.2, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
    backbone.save(str(model_dir / "backbone.keras"))
    config = {"framework": "mocov2", "branch": {"name": "mixmask", "grid_size": 4}, "backbone": "small_convnet",
              "dataset": "fashion_mnist", "image_shape": [28, 28, 1], "mean": list(MEAN), "std": list(STD)}
    results = {"epochs_completed": 3, "knn_top1": 71.5, "knn_top1_random_init": 60.25, "knn_k": 200, "knn_t": 0.1}
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "results.json").write_text(json.dumps(results))
    export_dir = str(model_dir / "export")
    path = saved_model.export_from_model_dir(str(model_dir), export_dir)
    return path, backbone


def test_layout_signature_defs_and_model_card(exported):
    path, backbone = exported
    assert path.endswith(os.sep + os.path.join("export", "1"))
    assert set(os.listdir(path)) <= {"saved_model.pb", "variables", "assets", "assets.extra", "fingerprint.pb"}
    assert os.path.exists(os.path.join(path, "variables", "variables.index"))
    assert sorted(os.listdir(os.path.join(path, "assets.extra"))) == ["backbone.keras", "export.json"]

    # What TF Serving (and `saved_model_cli show --all`) reads: the MetaGraph's signature_defs.
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    (meta_graph,) = proto.meta_graphs
    assert list(meta_graph.meta_info_def.tags) == ["serve"]
    defs = meta_graph.signature_def
    assert {"serving_default", "serve_bytes", "tflite"} <= set(defs)

    def tensor(info):
        return info.dtype, [d.size for d in info.tensor_shape.dim]

    for name, input_name, input_spec in (("serving_default", "images", (types_pb2.DT_UINT8, [-1, -1, -1, 1])),
                                         ("serve_bytes", "image_bytes", (types_pb2.DT_STRING, [-1])),
                                         ("tflite", "pixels", (types_pb2.DT_FLOAT, [-1, 28, 28, 1]))):
        assert defs[name].method_name == "tensorflow/serving/predict"
        assert {k: tensor(v) for k, v in defs[name].inputs.items()} == {input_name: input_spec}
        assert {k: tensor(v) for k, v in defs[name].outputs.items()} == {
            "embedding": (types_pb2.DT_FLOAT, [-1, FEATURES])}

    card = json.load(open(os.path.join(path, "assets.extra", "export.json")))
    assert card["framework"] == "mocov2" and card["branch"]["name"] == "mixmask"
    assert card["dataset"] == "fashion_mnist" and card["backbone"] == "small_convnet" and card["epochs"] == 3
    assert card["knn_top1"] == 71.5 and card["knn_top1_random_init"] == 60.25
    assert card["embedding_dim"] == FEATURES and card["image_shape"] == [28, 28, 1]
    assert card["input"] == {"name": "images", "dtype": "uint8", "shape": [None, 28, 28, 1]}
    assert card["signatures"]["serving_default"]["inputs"] == {
        "images": {"dtype": "uint8", "shape": [None, None, None, 1]}}
    assert card["signatures"]["serve_bytes"]["inputs"]["image_bytes"]["dtype"] == "string"
    assert card["signatures"]["serve_bytes"]["inputs"]["image_bytes"]["shape"] == [None]
    assert card["signatures"]["tflite"]["inputs"]["pixels"]["dtype"] == "float32"
    assert card["signatures"]["tflite"]["inputs"]["pixels"]["shape"] == [None, 28, 28, 1]
    for signature in card["signatures"].values():
        assert signature["outputs"] == {"embedding": {"dtype": "float32", "shape": [None, FEATURES]}}
    assert card["normalization"]["mean"] == list(MEAN) and card["normalization"]["std"] == list(STD)
    assert card["resize"]["method"] == "bilinear" and card["resize"]["antialias"] is True
    assert "centre" in card["resize"]["rule"] and card["resize"]["target"] == [28, 28]
    exported_at = datetime.datetime.fromisoformat(card["exported_at"])
    assert exported_at.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.UTC) - exported_at).total_seconds()) < 3600
    assert card["tensorflow_version"] == tf.__version__ and card["keras_version"] == keras.__version__
    assert card["max_image_pixels"] == 89_478_485  # serve_bytes' pixel budget, Pillow's default

    # The .keras backbone reloads and gives the same features.
    images = _photos(2, 28, 28, seed=5)
    reloaded = keras.models.load_model(os.path.join(path, "assets.extra", "backbone.keras"))
    x = (images / 255.0 - MEAN[0]) / STD[0]
    np.testing.assert_allclose(reloaded(x), backbone(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ratio", [1.0, 0.875])
@pytest.mark.parametrize("size", [(40, 40), (30, 50), (50, 30), (20, 20), (28, 61), (1, 3), (28, 28)])
def test_conform_batch_is_conform_image_batched(size, ratio):
    images = _photos(3, *size, seed=1)
    expected = np.stack([data.conform_image(image, size=28, crop_ratio=ratio).numpy() for image in images])
    eager = saved_model.conform_batch(images, 28, 28, ratio).numpy()
    graph = tf.function(lambda x: saved_model.conform_batch(x, 28, 28, ratio),
                        input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8)])(images).numpy()
    np.testing.assert_array_equal(eager, expected)
    np.testing.assert_array_equal(graph, expected)
    if ratio < 1 and size == (28, 28):  # the evaluation transform zooms in even at the training size
        assert not np.array_equal(eager, images)


def test_export_serves_with_the_runs_centre_crop_ratio(tmp_path):
    """An export with crop ratio 0.875 serves what evaluation computes: shorter side 32, centre 28."""
    backbone = backbones.small_convnet((28, 28, 1), width=4)
    path = saved_model.export_backbone(backbone, str(tmp_path / "export"), MEAN, STD, crop_ratio=0.875)
    card = json.loads(open(os.path.join(path, "assets.extra", "export.json")).read())
    assert card["resize"]["crop_ratio"] == 0.875
    served = tf.saved_model.load(path).signatures["serving_default"]
    images = _photos(2, 40, 60, seed=9)
    conformed = np.stack([data.conform_image(image, size=28, crop_ratio=0.875).numpy() for image in images])
    x = (conformed / 255.0 - MEAN[0]) / STD[0]
    np.testing.assert_allclose(served(images=tf.constant(images))["embedding"], backbone(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        saved_model.export_backbone(backbone, str(tmp_path / "bad"), MEAN, STD, crop_ratio=0.0)


SERVE_SCRIPT = r"""
import base64, importlib.util, json, sys
import numpy as np
import tensorflow as tf

path, inputs_path, out_path = sys.argv[1:4]
model = tf.saved_model.load(path)
images_fn, bytes_fn = model.signatures["serving_default"], model.signatures["serve_bytes"]
arrays = np.load(inputs_path)
spec = json.load(open(inputs_path + ".json"))
png = [base64.b64decode(s) for s in spec["png"]]
jpeg = [base64.b64decode(s) for s in spec["jpeg"]]
out = {}
for name in arrays.files:
    out[name] = images_fn(images=tf.constant(arrays[name]))["embedding"].numpy()
out["bytes_png"] = bytes_fn(image_bytes=tf.constant(png))["embedding"].numpy()
out["png_decoded"] = np.concatenate([images_fn(images=tf.io.decode_png(b, channels=1)[tf.newaxis])["embedding"].numpy()
                                     for b in png])
out["bytes_jpeg"] = bytes_fn(image_bytes=tf.constant(jpeg))["embedding"].numpy()
out["bytes_mixed"] = bytes_fn(image_bytes=tf.constant(png[:2] + jpeg + png[2:3]))["embedding"].numpy()
out["bytes_empty"] = bytes_fn(image_bytes=tf.constant([], tf.string))["embedding"].numpy()
out["tflite_3"] = model.signatures["tflite"](pixels=tf.constant(arrays["batch_3"], tf.float32))["embedding"].numpy()

# REST bodies, decoded with TF Serving's row-format rules: `instances` is the batch of the
# signature's only input; {"b64": ...} is base64 of a DT_STRING value. Reply {"predictions": ...}.
for name, text in spec["bodies"].items():
    body = json.loads(text)
    fn = model.signatures[body["signature_name"]]
    (key, input_spec), = fn.structured_input_signature[1].items()
    rows = [base64.b64decode(i["b64"]) if isinstance(i, dict) else i for i in body["instances"]]
    reply = json.dumps({"predictions": fn(**{key: tf.constant(rows, input_spec.dtype)})["embedding"].numpy().tolist()})
    out["rest_" + name] = np.asarray(json.loads(reply)["predictions"], np.float32)

errors = {}
for name, call in [
        ("float32", lambda: images_fn(images=tf.zeros([2, 28, 28, 1], tf.float32))),
        ("channels", lambda: images_fn(images=tf.zeros([2, 28, 28, 3], tf.uint8))),
        ("rank", lambda: images_fn(images=tf.zeros([28, 28, 1], tf.uint8))),
        ("corrupt", lambda: bytes_fn(image_bytes=tf.constant([png[0], b"not an image"]))),
        ("bytes_rank", lambda: bytes_fn(image_bytes=tf.constant(png[0])))]:
    try:
        call()
        errors[name] = None
    except Exception as e:
        errors[name] = [type(e).__name__, str(e)]
out["after_errors"] = images_fn(images=tf.constant(arrays["batch_3"]))["embedding"].numpy()
np.savez(out_path, **out)

def specs(structure):
    return {k: [v.dtype.name, v.shape.as_list()] for k, v in structure.items()}

print(json.dumps({"signatures": {name: {"inputs": specs(fn.structured_input_signature[1]),
                                        "outputs": specs(fn.structured_outputs)}
                                 for name, fn in model.signatures.items()},
                  "errors": errors,
                  "project_importable": [m for m in ("mixmask_tf", "export", "trainers")
                                         if importlib.util.find_spec(m) is not None]}))
"""


def _docs_example(marker):
    text = open(os.path.join(REPO_ROOT, "docs", "serving.md")).read()
    match = re.search(re.escape(marker) + r"\s*\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/serving.md block after {marker!r} not found"
    return match.group(1)


@pytest.mark.slow
def test_both_signatures_in_fresh_tensorflow_only_process(exported, tmp_path):
    path, backbone = exported
    arrays = {"batch_1": _photos(1, 28, 28, seed=10), "batch_3": _photos(3, 28, 28, seed=20),
              "resized_7": _photos(7, 40, 40, seed=30), "wide_3": _photos(3, 30, 50, seed=40),
              "empty": np.zeros((0, 28, 28, 1), np.uint8), "empty_40": np.zeros((0, 40, 40, 1), np.uint8)}
    png_images = [_photo(28, 28, 50), _photo(40, 40, 51), _photo(30, 50, 52), _photo(64, 20, 53)]
    rgb = np.concatenate([_photo(36, 48, 60), _photo(36, 48, 61), _photo(36, 48, 62)], axis=-1)
    jpeg_images = [rgb, _photo(50, 50, 63)]
    png = [tf.io.encode_png(image).numpy() for image in png_images]
    jpeg = [tf.io.encode_jpeg(image, quality=90).numpy() for image in jpeg_images]
    namespace = {}
    exec(_docs_example("<!-- example: rest-bodies -->"), namespace)
    bodies = {"images": json.dumps(namespace["images_body"](arrays["resized_7"][:3])),
              "bytes": json.dumps(namespace["bytes_body"]([jpeg[0], png[1], png[3]]))}
    inputs_path = str(tmp_path / "inputs.npz")
    np.savez(inputs_path, **arrays)
    with open(inputs_path + ".json", "w") as f:
        json.dump({"png": [base64.b64encode(b).decode() for b in png],
                   "jpeg": [base64.b64encode(b).decode() for b in jpeg], "bodies": bodies}, f)
    out_path = str(tmp_path / "out.npz")
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, path, inputs_path, out_path],
                            capture_output=True, text=True, timeout=300, env=TF_ONLY_ENV, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    out = dict(np.load(out_path))

    assert report["project_importable"] == []  # served with TensorFlow alone
    assert report["signatures"] == {
        "serving_default": {"inputs": {"images": ["uint8", [None, None, None, 1]]},
                            "outputs": {"embedding": ["float32", [None, FEATURES]]}},
        "serve_bytes": {"inputs": {"image_bytes": ["string", [None]]},
                        "outputs": {"embedding": ["float32", [None, FEATURES]]}},
        "tflite": {"inputs": {"pixels": ["float32", [None, 28, 28, 1]]},
                   "outputs": {"embedding": ["float32", [None, FEATURES]]}}}

    def close(actual, expected):
        assert actual.shape == expected.shape and actual.dtype == np.float32
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)

    for name in ("batch_1", "batch_3", "resized_7", "wide_3", "empty", "empty_40"):
        close(out[name], _expected(backbone, arrays[name]))
    # Resizing really happened the training way: a plain resize (no crop) gives other features.
    squashed = tf.cast(tf.round(tf.image.resize(arrays["wide_3"].astype(np.float32), (28, 28), antialias=True)),
                       tf.uint8).numpy()
    assert np.abs(out["wide_3"] - _expected(backbone, squashed)).max() > 1e-3

    # serve_bytes: PNG matches serving_default on the decoded pixels, and the in-process reference.
    close(out["bytes_png"], out["png_decoded"])
    close(out["bytes_png"], np.concatenate([_expected(backbone, image[None]) for image in png_images]))
    decoded_jpeg = [tf.io.decode_image(b, channels=1, expand_animations=False).numpy() for b in jpeg]
    close(out["bytes_jpeg"], np.concatenate([_expected(backbone, image[None]) for image in decoded_jpeg]))
    close(out["bytes_mixed"], np.concatenate([out["bytes_png"][:2], out["bytes_jpeg"], out["bytes_png"][2:3]]))
    close(out["bytes_empty"], np.zeros((0, FEATURES), np.float32))
    # The TF Lite signature (float32 pixels at the training size) computes the same in TensorFlow.
    close(out["tflite_3"], out["batch_3"])

    # REST JSON bodies built by the docs' helpers give the same embeddings.
    close(out["rest_images"], out["resized_7"][:3])
    close(out["rest_bytes"], np.concatenate([out["bytes_jpeg"][:1], out["bytes_png"][1:2], out["bytes_png"][3:4]]))

    errors = report["errors"]
    assert errors["float32"][0] == "InvalidArgumentError"
    assert "was expected to be a uint8 tensor but is a float tensor" in errors["float32"][1]
    assert errors["channels"][0] == "InvalidArgumentError"
    assert "Shape of tensor images [2,28,28,3] is not compatible with expected shape [?,?,?,1]" in errors["channels"][1]
    assert errors["rank"][0] == "InvalidArgumentError"
    assert "Shape of tensor images [28,28,1] is not compatible with expected shape [?,?,?,1]" in errors["rank"][1]
    assert errors["corrupt"][0] == "InvalidArgumentError"  # refused by the pixel budget's header reader
    assert "not a JPEG, PNG, GIF, BMP or WebP image whose size can be read from its header" in errors["corrupt"][1]
    assert errors["bytes_rank"][0] == "InvalidArgumentError"
    assert "Shape of tensor image_bytes [] is not compatible with expected shape [?]" in errors["bytes_rank"][1]
    close(out["after_errors"], out["batch_3"])


def test_versions_are_sequential_and_never_overwritten(tmp_path):
    backbone = backbones.small_convnet((8, 8, 1), width=2)
    export_dir = str(tmp_path)
    assert saved_model.next_version(export_dir) == 1
    # Neither temporary folders (a dead export's or a live one's) nor other names count as versions.
    host = socket.gethostname()
    live = f".tmp-export-{host}-{os.getpid()}-0123abcd"
    other_host = ".tmp-export-otherhost-4194304-0123abcd"
    for name in (live, other_host, "notes", "７"):  # "７": a non-ASCII digit
        os.makedirs(os.path.join(export_dir, name))
    open(os.path.join(export_dir, "5"), "w").close()  # a file, not a version folder
    assert saved_model.list_versions(export_dir) == [] and saved_model.next_version(export_dir) == 1
    saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,))
    second = saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,))
    assert second.endswith(os.sep + "2")
    with pytest.raises(FileExistsError, match="already exists"):
        saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,), version=2)
    third = saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,), version=7)
    assert third.endswith(os.sep + "7") and saved_model.next_version(export_dir) == 8
    # The live export's and the other host's temporary folders were left alone; nothing else was left.
    assert sorted(os.listdir(export_dir)) == sorted(["1", "2", "5", "7", live, other_host, "notes", "７"])
    with pytest.raises(ValueError, match="one per channel"):
        saved_model.export_backbone(backbone, export_dir, (0.5, 0.5, 0.5), (0.5,))


def test_failed_export_leaves_no_version(tmp_path, monkeypatch):
    backbone = backbones.small_convnet((8, 8, 1), width=2)

    def boom(path, *args, **kwargs):
        # Fails after the SavedModel itself was written into the temporary folder.
        open(path, "w").close()
        raise OSError("disk full")

    monkeypatch.setattr(backbone, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        saved_model.export_backbone(backbone, str(tmp_path), (0.5,), (0.5,))
    assert os.listdir(tmp_path) == []


KILL_SCRIPT = r"""
import os, signal, sys
import keras
from export import saved_model
from mixmask_tf import backbones

def save_then_die(self, filepath, *args, **kwargs):
    open(filepath, "wb").close()  # half of the extra files: the SavedModel itself is already written
    os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save = save_then_die
saved_model.export_backbone(backbones.small_convnet((8, 8, 1), width=2), sys.argv[1], (0.5,), (0.5,))
print("export finished")  # never reached
"""


@pytest.mark.slow
def test_export_killed_mid_write_leaves_no_version(tmp_path):
    export_dir = str(tmp_path / "export")
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, export_dir], capture_output=True, text=True,
                            timeout=300, env=ENV, cwd=REPO_ROOT)
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-3000:])
    assert "export finished" not in result.stdout
    (leftover,) = os.listdir(export_dir)  # the dead export's hidden temporary folder, nothing else
    assert leftover.startswith(".tmp-export-")
    assert {"saved_model.pb", "variables"} <= set(os.listdir(os.path.join(export_dir, leftover)))
    assert saved_model.list_versions(export_dir) == [] and saved_model.next_version(export_dir) == 1
    assert not any(name.isdigit() for name in os.listdir(export_dir))

    path = saved_model.export_backbone(backbones.small_convnet((8, 8, 1), width=2), export_dir, (0.5,), (0.5,))
    assert path == os.path.join(export_dir, "1")
    assert os.listdir(export_dir) == ["1"]  # the dead export's folder was cleaned up
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.zeros([3, 8, 8, 1], tf.uint8))
    assert served["embedding"].shape == (3, 8)


def test_export_from_model_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        saved_model.export_from_model_dir(str(tmp_path), str(tmp_path / "export"))
    backbones.small_convnet((8, 8, 1), width=2).save(str(tmp_path / "backbone.keras"))
    (tmp_path / "config.json").write_text(json.dumps({"image_shape": [28, 28, 1], "mean": [0.5], "std": [0.5]}))
    with pytest.raises(ValueError, match="image_shape"):
        saved_model.export_from_model_dir(str(tmp_path), str(tmp_path / "export"))
    assert not os.path.exists(tmp_path / "export")


def test_model_card_lists_the_runs_evaluations(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    run = {"source": "run", "epochs": 5}
    entries = {
        "knn.json": {"encoder": run, "control": "none", "checkpoint": None, "knn_top1": 77.9, "knn_top5": 99.4,
                     "k": 200, "temperature": 0.1, "dataset": "fashion_mnist", "test_split": "test"},
        "linear-fast.json": {"encoder": run, "control": "none", "checkpoint": None, "linear_top1": 82.1,
                             "protocol": "fast", "dataset": "fashion_mnist", "test_split": "test"},
        # Left out: an earlier checkpoint, a control, results of an older state of the run, broken JSON.
        "knn-ckpt-00001.json": {"encoder": {"source": "run", "epochs": 1}, "checkpoint": "ckpt-00001.npz",
                                "knn_top1": 60.0},
        "knn-raw_pixels.json": {"encoder": {"control": "raw_pixels"}, "control": "raw_pixels", "knn_top1": 84.0},
        "finetune-1pct.json": {"encoder": {"source": "run", "epochs": 3}, "control": "none", "finetune_top1": 70.0},
    }
    for name, entry in entries.items():
        (folder / name).write_text(json.dumps(entry))
    (folder / "broken.json").write_text("{")
    found = saved_model._evaluations(str(tmp_path), {"epochs_completed": 5})
    assert sorted(found) == ["knn", "linear-fast"]
    assert found["knn"]["knn_top1"] == 77.9 and found["knn"]["command"] == "trainers.knn_eval"
    assert found["linear-fast"] == {"linear_top1": 82.1, "protocol": "fast", "dataset": "fashion_mnist",
                                    "test_split": "test", "command": "trainers.linear_eval"}


BOMB_SCRIPT = r"""
import base64, json, resource, sys
import numpy as np
import tensorflow as tf

path, inputs_path = sys.argv[1:3]
spec = json.load(open(inputs_path))
serve = tf.saved_model.load(path).signatures["serve_bytes"]
good = [base64.b64decode(s) for s in spec["good"]]


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


first = serve(image_bytes=tf.constant(good))["embedding"].numpy()
report = {"baseline_mib": peak_mib(), "refused": {}, "peak_mib": {}}
for name, b64 in spec["bombs"].items():
    try:  # a request of a good image and the bomb, second
        serve(image_bytes=tf.constant([good[0], base64.b64decode(b64)]))
        report["refused"][name] = ["served", ""]
    except tf.errors.OpError as e:
        report["refused"][name] = [type(e).__name__, e.message]
    report["peak_mib"][name] = peak_mib()
again = serve(image_bytes=tf.constant(good))["embedding"].numpy()
report["same_after"] = bool(np.array_equal(first, again))
print(json.dumps(report))
"""


def test_serve_bytes_refuses_decompression_bombs_before_decoding(exported, tmp_path):
    """Bombs (a few hundred KB or less, declaring up to 65000 x 65000 pixels: gigabytes once decoded)
    are refused with their size and the budget; peak memory stays at the good request's; the same
    loaded model then serves good requests as before. In a fresh TensorFlow-only process."""
    path, backbone = exported
    good_images = [_photo(1000, 1200, 70), _photo(28, 28, 71)]  # 1.2 megapixels: a real decode as baseline
    good = [tf.io.encode_png(good_images[0]).numpy(), tf.io.encode_jpeg(good_images[1]).numpy()]
    made = bombs()
    inputs = str(tmp_path / "inputs.json")
    with open(inputs, "w") as f:
        json.dump({"good": [base64.b64encode(b).decode() for b in good],
                   "bombs": {name: base64.b64encode(b).decode() for name, (b, _) in made.items()}}, f)
    result = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, path, inputs],
                            capture_output=True, text=True, timeout=300, env=TF_ONLY_ENV, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, (contents, (height, width)) in made.items():
        kind, message = report["refused"][name]
        assert kind == "InvalidArgumentError", (name, kind, message)
        assert (f"image_bytes[1] declares {height} x {width} = {height * width} pixels, beyond the pixel budget "
                f"of 89478485 pixels (max_image_pixels)") in message, message
        # Decoding would need height * width bytes even as greyscale (>= 256 MiB); the refusal adds
        # next to nothing to the good request's peak.
        assert height * width / 2 ** 20 > 240
        assert report["peak_mib"][name] - report["baseline_mib"] < 100, (name, report)
    assert report["same_after"]


def test_pixel_budget_set_at_export(exported, tmp_path):
    """`max_image_pixels` at export (library and CLI): recorded in the model card, enforced at the boundary."""
    _, backbone = exported
    path = saved_model.export_backbone(backbone, str(tmp_path / "export"), MEAN, STD, max_image_pixels=1200)
    card = json.loads(open(os.path.join(path, "assets.extra", "export.json")).read())
    assert card["max_image_pixels"] == 1200 and "1200" in card["signatures"]["serve_bytes"]["inputs"]["image_bytes"]["content"]
    serve = tf.saved_model.load(path).signatures["serve_bytes"]
    at_budget = [tf.io.encode_png(_photo(30, 40, 80)).numpy(), tf.io.encode_jpeg(_photo(40, 30, 81)).numpy()]
    assert serve(image_bytes=tf.constant(at_budget))["embedding"].shape == (2, FEATURES)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] declares 41 x 30 = 1230 pixels, beyond the pixel budget of 1200"):
        serve(image_bytes=tf.constant([tf.io.encode_png(_photo(41, 30, 82)).numpy()]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares 200 x 300 = 60000 pixels"):
        serve(image_bytes=tf.constant([at_budget[0], png_bomb(200, 300)]))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="pixel budget"):
            saved_model.export_backbone(backbone, str(tmp_path / "bad"), MEAN, STD, max_image_pixels=bad)

    # The command's flag, through export_from_model_dir.
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    backbone.save(str(model_dir / "backbone.keras"))
    (model_dir / "config.json").write_text(json.dumps({"image_shape": [28, 28, 1], "mean": list(MEAN), "std": list(STD)}))
    result = subprocess.run([sys.executable, "-m", "export.saved_model", f"--model_dir={model_dir}",
                             "--max_image_pixels=5000"], capture_output=True, text=True, timeout=300, env=ENV,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads((model_dir / "export" / "1" / "assets.extra" / "export.json").read_text())
    assert card["max_image_pixels"] == 5000
    result = subprocess.run([sys.executable, "-m", "export.saved_model", f"--model_dir={model_dir}",
                             "--max_image_pixels=0"], capture_output=True, text=True, timeout=300, env=ENV,
                            cwd=REPO_ROOT)
    assert result.returncode == 2 and "pixel budget must be a positive integer" in result.stderr
