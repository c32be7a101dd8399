"""The input filter (MSCN's high-pass, mixmask_tf/ops/filters.py) travels with the encoder: the export's
three signatures, its model card, the encoders of a run folder and of an export, their fine-tuning
copies, the random-init control, the head feature, TF Lite, and the fine-tuning command.

The check that the filter is really applied: `x - GaussianBlur(x)` removes a constant, and adding a
constant to every pixel adds a constant to the normalised image, so a filtered encoder gives the same
embedding for an image and for that image brightened by 20 (no pixel clipped), where an unfiltered
one does not."""

import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_module

from export import saved_model, tflite
from mixmask_tf import backbones, checkpoint, encoders, models
from mixmask_tf.ops import filters

MEAN, STD = (0.286,), (0.353,)
SHAPE = (28, 28, 1)
FILTER = filters.HighPassFilter.for_images(SHAPE)  # sigma 0.625, radius 2
OPTIONS = {"embedding_dim": 8, "queue_size": 32}
SHIFT = 20


def _pixels(seed, n=4, shape=SHAPE):
    """uint8 images in [40, 200]: the image + SHIFT stays in range (no clipping)."""
    return np.random.default_rng(seed).integers(40, 201, (n, *shape)).astype(np.uint8)


def _normalised(pixels):
    return ((pixels.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)


def _assert_shift_invariant(embed, pixels, filtered=True):
    """embed(pixels) equals embed(pixels + SHIFT) for a filtered encoder, and clearly differs without."""
    a, b = np.asarray(embed(pixels)), np.asarray(embed(pixels + SHIFT))
    if filtered:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    else:
        assert np.linalg.norm(a - b) > 0.05 * np.linalg.norm(a)
    return a


def _has_highpass(model):
    return any(isinstance(layer, filters.HighPassLayer) or (hasattr(layer, "layers") and _has_highpass(layer))
               for layer in model.layers)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as an MSCN pretraining writes it: config.json with "input_filter", the RAW
    backbone.keras and a training checkpoint of the same epoch; its filtered export, and an export
    of the same backbone without the filter."""
    folder = str(tmp_path_factory.mktemp("mscn") / "run")
    os.makedirs(folder)
    keras.utils.set_random_seed(0)
    trainer = models.build_trainer("mocov2", backbones.small_convnet(SHAPE, width=4), seed=0, **OPTIONS)
    trainer.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    views = np.random.default_rng(0).normal(size=(8, 2, *SHAPE)).astype(np.float32)
    trainer.train_on_batch(views)  # BatchNorm moving statistics away from their initial values
    checkpoint.TrainingCheckpoint(trainer, os.path.join(folder, "checkpoints")).save(1)
    trainer.backbone.save(os.path.join(folder, "backbone.keras"))
    config = {"framework": "mocov2", "framework_options": OPTIONS, "seed": 0, "backbone": "small_convnet",
              "branch": {"name": "none"}, "dataset": "fashion_mnist", "image_shape": list(SHAPE), "mean": list(MEAN),
              "std": list(STD), "input_filter": FILTER.as_dict()}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    filtered = saved_model.export_from_model_dir(folder, os.path.join(folder, "export"))
    plain = saved_model.export_backbone(trainer.backbone, str(tmp_path_factory.mktemp("plain")), MEAN, STD)
    return types.SimpleNamespace(folder=folder, trainer=trainer, backbone=trainer.backbone, filtered=filtered,
                                 plain=plain)


def _card(path):
    with open(os.path.join(path, "assets.extra", "export.json")) as f:
        return json.load(f)


def test_serving_signatures_filter_after_normalising(run):
    """THE check: serving_default and serve_bytes of the filtered export are invariant to a constant
    brightness shift; the unfiltered export's are not."""
    pixels = _pixels(1)
    reference = np.asarray(run.backbone(FILTER(_normalised(pixels)), training=False))
    for path, filtered in ((run.filtered, True), (run.plain, False)):
        loaded = tf.saved_model.load(path)
        serving_default, serve_bytes, tflite_sig = (loaded.signatures[k] for k in ("serving_default", "serve_bytes",
                                                                                    "tflite"))

        def by_pixels(images):
            return serving_default(images=tf.constant(images))["embedding"].numpy()

        def by_bytes(images):
            encoded = tf.stack([tf.io.encode_png(image) for image in images])
            return serve_bytes(image_bytes=encoded)["embedding"].numpy()

        def by_float(images):
            return tflite_sig(pixels=tf.constant(images, tf.float32))["embedding"].numpy()

        embedding = _assert_shift_invariant(by_pixels, pixels, filtered)
        np.testing.assert_allclose(_assert_shift_invariant(by_bytes, pixels, filtered), embedding, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_assert_shift_invariant(by_float, pixels, filtered), embedding, rtol=1e-5, atol=1e-6)
        if filtered:  # independent reference: the raw backbone on the filtered normalised images
            np.testing.assert_allclose(embedding, reference, rtol=1e-4, atol=1e-5)
        else:
            assert np.linalg.norm(embedding - reference) > 0.05 * np.linalg.norm(reference)


def test_model_card_and_raw_backbone_keras(run):
    card = _card(run.filtered)
    assert card["input_filter"] == FILTER.as_dict() == {**card["input_filter"], "sigma": 0.625, "radius": 2}
    assert "input_filter" in card["normalization"]["formula"] and "GaussianBlur" in card["normalization"]["formula"]
    plain = _card(run.plain)
    assert plain["input_filter"] is None and plain["normalization"]["formula"] == "(uint8 / 255 - mean) / std"
    # assets.extra/backbone.keras stays the raw backbone.
    raw = keras.models.load_model(os.path.join(run.filtered, "assets.extra", "backbone.keras"), compile=False)
    assert not _has_highpass(raw)
    x = _normalised(_pixels(2))
    np.testing.assert_allclose(raw(x, training=False), run.backbone(x, training=False), rtol=1e-6, atol=1e-6)


def test_export_refuses_a_filter_the_images_cannot_take(run, tmp_path):
    with pytest.raises(ValueError, match="needs images larger than it"):
        saved_model.export_backbone(run.backbone, str(tmp_path), MEAN, STD, input_filter=filters.HighPassFilter(5.0, 30))
    assert not os.listdir(tmp_path)


def test_encoders_of_run_export_and_keras_file_agree_and_filter(run):
    pixels = _pixels(3)
    from_run = encoders.load_encoder(run.folder)
    from_export = encoders.load_encoder(os.path.dirname(run.filtered))
    from_file = encoders.load_encoder(os.path.join(run.folder, "backbone.keras"))
    expected = _assert_shift_invariant(from_export, pixels)
    for encoder in (from_run, from_export, from_file):
        assert encoder.input_filter == encoder.metadata["input_filter"] == FILTER.as_dict()
        np.testing.assert_allclose(_assert_shift_invariant(encoder, pixels), expected, rtol=1e-4, atol=1e-5)
    plain = encoders.load_encoder(run.plain)
    assert plain.input_filter is None and plain.metadata["input_filter"] is None
    _assert_shift_invariant(plain, pixels, filtered=False)

    # The fine-tuning copies carry the filter: same features, shift invariant, saved with it.
    for encoder in (from_run, from_export):
        copy = encoder.trainable_backbone()
        assert _has_highpass(copy)

        def tuned(images, copy=copy):
            return copy(_normalised(images), training=False)

        np.testing.assert_allclose(_assert_shift_invariant(tuned, pixels), expected, rtol=1e-4, atol=1e-5)
    # The random-init control: new weights, the same filter.
    control = encoders.random_init_like(from_run, seed=3)
    assert control.input_filter == FILTER.as_dict() and control.metadata["control"] == "random_init"
    assert not np.allclose(_assert_shift_invariant(control, pixels), expected, atol=1e-3)
    # The raw-pixel control has none.
    assert encoders.raw_pixel_encoder(SHAPE, MEAN, STD).input_filter is None
    # A model that already filters is not filtered twice.
    with pytest.raises(ValueError, match="already applies the input filter"):
        encoders.from_keras(from_run.trainable_backbone(), MEAN, STD, input_filter=FILTER)


def test_saved_finetuned_classifier_keeps_the_filter(run, tmp_path):
    """What `trainers.finetune --save_model` writes: the classifier over the trainable copy."""
    copy = encoders.load_encoder(os.path.dirname(run.filtered)).trainable_backbone()
    inputs = keras.Input(SHAPE)
    classifier = keras.Model(inputs, keras.layers.Dense(3, name="classifier")(copy(inputs)))
    path = str(tmp_path / "finetuned.keras")
    classifier.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert _has_highpass(loaded)
    pixels = _pixels(4)
    np.testing.assert_allclose(
        _assert_shift_invariant(lambda p: loaded(_normalised(p), training=False), pixels),
        classifier(_normalised(pixels), training=False), rtol=1e-5, atol=1e-5)
    # Loaded as an encoder (a .keras in a run folder gets the run's filter unless it has one inside).
    os.rename(path, os.path.join(run.folder, "finetuned.keras"))
    encoder = encoders.load_encoder(os.path.join(run.folder, "finetuned.keras"))
    assert encoder.input_filter == FILTER.as_dict()
    np.testing.assert_allclose(encoder(pixels), loaded(_normalised(pixels), training=False), rtol=1e-5, atol=1e-5)
    os.remove(os.path.join(run.folder, "finetuned.keras"))


def test_head_feature_and_feature_model_filter(run):
    pixels = _pixels(5)
    head = encoders.load_encoder(run.folder, feature="head")
    assert head.input_filter == FILTER.as_dict() and head.embedding_dim == 8
    by_hand = run.trainer.query_encoder.get_layer("head")(
        run.backbone(FILTER(_normalised(pixels)), training=False), training=False)
    np.testing.assert_allclose(_assert_shift_invariant(head, pixels), by_hand, rtol=1e-4, atol=1e-5)

    # feature_model puts the trainer's filter in front (one wrapper per trainer, model and filter).
    weights = len(run.trainer.weights)
    assert encoders.feature_model(run.trainer) is run.backbone  # no input_filter attribute: unchanged
    stand_in = types.SimpleNamespace(backbone=run.backbone, input_filter=FILTER)
    model = encoders.feature_model(stand_in)
    assert model is encoders.feature_model(stand_in) and _has_highpass(model)
    np.testing.assert_allclose(model(_normalised(pixels), training=False),
                               run.backbone(FILTER(_normalised(pixels)), training=False), rtol=1e-5, atol=1e-6)
    object.__setattr__(run.trainer, "input_filter", FILTER)
    try:
        head_model = encoders.feature_model(run.trainer, "head")
        np.testing.assert_allclose(head_model(_normalised(pixels), training=False), by_hand, rtol=1e-4, atol=1e-5)
        assert len(run.trainer.weights) == weights  # the cached wrapper is not tracked by the trainer
    finally:
        object.__delattr__(run.trainer, "input_filter")


def test_tflite_of_a_filtered_export(tmp_path):
    """TF Lite builtins only (MIRROR_PAD, DEPTHWISE_CONV_2D), and the same embeddings as
    serving_default; RGB, so the depthwise blur runs per channel."""
    shape, mean, std = (20, 20, 3), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    keras.utils.set_random_seed(1)
    backbone = backbones.small_convnet(shape, width=4)
    input_filter = filters.HighPassFilter.for_images(shape, sigma=1.0)  # radius 3
    path = saved_model.export_backbone(backbone, str(tmp_path), mean, std, input_filter=input_filter)
    model = tflite.convert_to_tflite(path)
    ops = tflite.op_names(model)
    assert not any(op.startswith("CUSTOM") for op in ops), ops
    assert {"MIRROR_PAD", "DEPTHWISE_CONV_2D"} <= set(ops), ops
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            Interpreter = tf.lite.Interpreter
        runner = Interpreter(model_content=model).get_signature_runner("tflite")
    pixels = _pixels(6, 3, shape)
    serving_default = tf.saved_model.load(path).signatures["serving_default"]
    expected = _assert_shift_invariant(lambda p: serving_default(images=tf.constant(p))["embedding"].numpy(), pixels)
    out = _assert_shift_invariant(lambda p: runner(pixels=p.astype(np.float32))["embedding"], pixels)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_finetune_command_records_and_saves_the_filter(run, tmp_path):
    saved, output = str(tmp_path / "classifier.keras"), str(tmp_path / "finetune.json")
    result = run_module("trainers.finetune", f"--encoder={run.folder}", "--dataset=fashion_mnist",
                        "--train_limit=200", "--test_limit=64", "--label_fraction=0.1", "--epochs=1",
                        "--batch_size=16", "--eval_batch_size=64", f"--save_model={saved}", f"--output={output}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "high-pass input filter (sigma 0.625, radius 2)" in result.stdout
    with open(output) as f:
        results = json.load(f)
    assert results["input_filter"] == results["encoder"]["input_filter"] == FILTER.as_dict()
    loaded = keras.models.load_model(saved, compile=False)
    assert _has_highpass(loaded)
    _assert_shift_invariant(lambda p: loaded(_normalised(p), training=False), _pixels(7))
