"""TensorFlow Lite: the exports' `tflite` signature converts with TF Lite builtin ops only, and the
TF Lite interpreter gives the embeddings `serving_default` gives on the same uint8 images; the
`export.tflite` command and its errors."""

import json
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT

from export import saved_model, tflite
from mixmask_tf import backbones

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
# (input shape, pool_grid, mean, std): a colour model with a flattened 2 x 2 pooled grid (the
# flatten's SHAPE/STRIDED_SLICE/PACK/RESHAPE ops) and a grey one with global average pooling.
MODELS = {"rgb": ((32, 32, 3), 2, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
          "grey": ((28, 28, 1), 1, (0.286,), (0.353,))}


def _interpreter(model):
    """A TF Lite interpreter on the flatbuffer: LiteRT's when `ai_edge_litert` is installed, else
    `tf.lite.Interpreter` (deprecated in favour of LiteRT, same API; its warning is silenced)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_content=model)
    return Interpreter(model_content=model)


def _export(kind, export_dir):
    shape, pool_grid, mean, std = MODELS[kind]
    keras.utils.set_random_seed(1)
    backbone = backbones.small_convnet(shape, width=4, pool_grid=pool_grid)
    # Non-trivial BatchNorm statistics and scales, so a BatchNorm folded wrongly shows.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.2, 0.2, n))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, n))
            layer.gamma.assign(np.linspace(0.8, 1.3, n))
            layer.beta.assign(np.linspace(-0.1, 0.3, n))
    return saved_model.export_backbone(backbone, export_dir, mean, std)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return {kind: _export(kind, str(tmp_path_factory.mktemp(kind))) for kind in MODELS}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_tflite_signature_converts_to_builtins_and_matches_serving_default(exports, kind):
    path = exports[kind]
    (height, width, channels), _, mean, std = MODELS[kind]
    model = tflite.convert_to_tflite(path)
    ops = tflite.op_names(model)
    # Builtin ops only: no Flex (Select TF) or other custom op, weights frozen into constants.
    assert ops and not any(op.startswith("CUSTOM") for op in ops), ops
    assert not set(ops) & {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}, ops
    assert "CONV_2D" in ops

    interpreter = _interpreter(model)
    assert interpreter.get_signature_list() == {"tflite": {"inputs": ["pixels"], "outputs": ["embedding"]}}
    runner = interpreter.get_signature_runner("tflite")
    (detail,) = runner.get_input_details().values()
    assert detail["dtype"] == np.float32
    assert list(detail["shape_signature"]) == [-1, height, width, channels]  # dynamic batch

    loaded = tf.saved_model.load(path)
    serving_default = loaded.signatures["serving_default"]
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (5, height, width, channels), dtype=np.uint8)
    expected = serving_default(images=tf.constant(images))["embedding"].numpy()
    assert expected.shape == (5, 16 * (4 if kind == "rgb" else 1))
    # The embeddings differ clearly between images, so the tolerance below means something.
    assert np.linalg.norm(expected[0] - expected[1]) > 0.05 * np.linalg.norm(expected[0])

    # The same signature in TensorFlow: the same computation as serving_default.
    same_graph = loaded.signatures["tflite"](pixels=tf.constant(images, tf.float32))["embedding"].numpy()
    np.testing.assert_allclose(same_graph, expected, rtol=1e-6, atol=1e-7)

    # TF Lite, batches of 5, 1 and 2 (the runner resizes the dynamic batch dimension).
    for rows in (slice(0, 5), slice(0, 1), slice(3, 5)):
        out = runner(pixels=images[rows].astype(np.float32))["embedding"]
        ref = expected[rows]
        assert out.shape == ref.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
        assert np.linalg.norm(out - ref) <= 1e-5 * np.linalg.norm(ref)

    # An independent reference: the exported .keras backbone on (x / 255 - mean) / std computed
    # here; without the normalisation the features are clearly different.
    backbone = keras.models.load_model(os.path.join(path, "assets.extra", "backbone.keras"))
    x = (images.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    np.testing.assert_allclose(np.asarray(backbone(x, training=False)), expected, rtol=1e-4, atol=1e-6)
    unnormalised = np.asarray(backbone(images.astype(np.float32) / 255.0, training=False))
    assert np.linalg.norm(unnormalised - expected) > 0.05 * np.linalg.norm(expected)

    with open(os.path.join(path, "assets.extra", "export.json")) as f:
        card = json.load(f)
    assert card["signatures"]["tflite"]["inputs"]["pixels"]["dtype"] == "float32"
    assert card["signatures"]["tflite"]["inputs"]["pixels"]["shape"] == [None, height, width, channels]
    assert card["signatures"]["tflite"]["outputs"] == {
        "embedding": {"dtype": "float32", "shape": [None, expected.shape[1]]}}
    assert card["normalization"] == {"mean": list(mean), "std": list(std), "formula": "(uint8 / 255 - mean) / std"}
    # The other signatures are untouched.
    assert card["signatures"]["serving_default"]["inputs"] == {
        "images": {"dtype": "uint8", "shape": [None, None, None, channels]}}


def test_mixed_precision_backbone_converts_with_float32_compute(tmp_path):
    """bfloat16 convolutions are not TF Lite builtins: the `tflite` signature of a backbone built
    under mixed_bfloat16 computes in float32 (same weights); serving_default stays bfloat16."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(2)
        backbone = backbones.small_convnet((28, 28, 1), width=4)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    policies = [layer.dtype_policy.name for layer in backbone.layers]
    assert "mixed_bfloat16" in policies
    path = saved_model.export_backbone(backbone, str(tmp_path), (0.286,), (0.353,))
    assert [layer.dtype_policy.name for layer in backbone.layers] == policies  # restored after the export

    model = tflite.convert_to_tflite(path)
    assert not any(op.startswith("CUSTOM") for op in tflite.op_names(model))
    runner = _interpreter(model).get_signature_runner("tflite")
    images = np.random.default_rng(5).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    loaded = tf.saved_model.load(path)
    float32 = loaded.signatures["tflite"](pixels=tf.constant(images, tf.float32))["embedding"].numpy()
    out = runner(pixels=images.astype(np.float32))["embedding"]
    np.testing.assert_allclose(out, float32, rtol=1e-4, atol=1e-6)
    # serving_default still computes in bfloat16: the same embedding to bfloat16 precision only.
    served = loaded.signatures["serving_default"](images=tf.constant(images))["embedding"].numpy()
    assert 1e-5 < np.linalg.norm(out - served) / np.linalg.norm(served) < 3e-2


def test_serving_signatures_need_non_builtin_ops(exports):
    """Why the separate signature: serving_default's resize etc. are not TF Lite builtins."""
    with pytest.raises(ValueError, match=r"cannot be converted with TF Lite builtin ops only .*ScaleAndTranslate"):
        tflite.convert_to_tflite(exports["grey"], signature="serving_default")


def test_missing_savedmodel_and_signature_errors(exports, tmp_path):
    export_dir = os.path.dirname(exports["grey"])
    with pytest.raises(FileNotFoundError, match=r"no SavedModel at .*export base folder: pass a version folder"):
        tflite.convert_to_tflite(export_dir)
    with pytest.raises(FileNotFoundError, match="no SavedModel at"):
        tflite.convert_to_tflite(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"has no signature 'nope' \(it has serve_bytes, serving_default, tflite\)"):
        tflite.convert_to_tflite(exports["grey"], signature="nope")


def _docs_example(marker):
    with open(os.path.join(REPO_ROOT, "docs", "serving.md")) as f:
        text = f.read()
    match = re.search(re.escape(marker) + r"\s*\n```python\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/serving.md block after {marker!r} not found"
    return match.group(1)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "export.tflite", *args], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_cli_writes_the_flatbuffer_and_reports_errors(exports, tmp_path):
    path = exports["rgb"]
    output = tmp_path / "out" / "encoder.tflite"
    result = _cli(f"--saved_model={path}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"wrote {output} (")
    assert "signature 'tflite', pixels float32 [-1, 32, 32, 3] -> embedding float32 [-1, 64]" in result.stdout
    assert os.listdir(output.parent) == ["encoder.tflite"]  # written atomically: no temporary file left

    # Read with the helper of docs/serving.md, section 8.
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        exec(_docs_example("<!-- example: tflite-interpreter -->"), namespace)
        tflite_embed = namespace["tflite_embed"]
        images = np.random.default_rng(3).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        out = tflite_embed(str(output), images)
        for bad in (images[:, :28, :28], images.astype(np.float32), images[:, :, :, :1], images[:0]):
            with pytest.raises(ValueError, match=r"need uint8 images \[N >= 1, 32, 32, 3\]"):
                tflite_embed(str(output), bad)
    expected = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))["embedding"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)

    missing = tmp_path / "missing.tflite"
    result = _cli(f"--saved_model={path}", f"--output={missing}", "--signature=nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"tflite: error: the SavedModel {path} has no signature 'nope' (it has serve_bytes, serving_default, tflite)")
    assert not missing.exists()
