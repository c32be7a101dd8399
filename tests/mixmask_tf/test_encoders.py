"""Loading encoders from a run folder, one of its checkpoints and bare files; the controls."""

import json
import os

import keras
import numpy as np
import pytest

from mixmask_tf import backbones, checkpoint, data, encoders, models


def _step(model, images):
    views = np.stack([images, images[:, ::-1]], axis=1).astype(np.float32)
    model.train_on_batch(views)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as trainers.pretrain writes it: config.json, checkpoints and backbone.keras."""
    folder = str(tmp_path_factory.mktemp("run"))
    keras.utils.set_random_seed(0)
    options = {"embedding_dim": 8, "queue_size": 32}
    model = models.build_trainer("mocov2", backbones.small_convnet((16, 16, 1), width=4), seed=0, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    images = data.synthetic_dataset(16, (16, 16, 1), num_classes=2)[0] / 255.0
    config = {"framework": "mocov2", "framework_options": options, "seed": 0, "mean": [0.5], "std": [0.25],
              "dataset": "synthetic", "backbone": "small_convnet", "branch": {"name": "none"}}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    snapshots = []
    for epoch in (1, 2):
        _step(model, images)
        checkpoint.TrainingCheckpoint(model, os.path.join(folder, "checkpoints")).save(epoch)
        model.backbone.save(os.path.join(folder, "backbone.keras"))
        snapshots.append([w.copy() for w in model.backbone.get_weights()])
    return folder, snapshots


def _features(weights, pixels):
    backbone = backbones.small_convnet((16, 16, 1), width=4)
    backbone.set_weights(weights)
    return np.asarray(backbone((pixels / 255.0 - 0.5) / 0.25, training=False))


def test_run_dir_and_each_checkpoint(run_dir):
    folder, (epoch1, epoch2) = run_dir
    pixels = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 1)).astype(np.uint8)
    last = encoders.load_encoder(folder)
    np.testing.assert_allclose(last(pixels), _features(epoch2, pixels), rtol=1e-5, atol=1e-5)
    first = encoders.load_encoder(folder, checkpoint="ckpt-1")
    assert first.metadata["epochs"] == 1
    np.testing.assert_allclose(first(pixels), _features(epoch1, pixels), rtol=1e-5, atol=1e-5)
    assert not np.allclose(first(pixels), last(pixels))
    # float pixels in [0, 255] give the same features as uint8.
    np.testing.assert_allclose(last(pixels.astype(np.float32)), last(pixels), rtol=1e-6)
    with pytest.raises(ValueError, match=r"encoder expects images \[N, 16, 16, 1\]"):
        last(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(encoders.EncoderLoadError, match="not found"):
        encoders.load_encoder(folder, checkpoint="ckpt-7")
    # A .keras file beside its run's config.json finds its normalisation.
    bare = encoders.load_encoder(os.path.join(folder, "backbone.keras"))
    np.testing.assert_allclose(bare(pixels), last(pixels), rtol=1e-6)


def test_controls(run_dir):
    folder, _ = run_dir
    encoder = encoders.load_encoder(folder)
    pixels = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 1)).astype(np.uint8)
    raw = encoders.raw_pixel_encoder((16, 16, 1), (0.5,), (0.25,))
    np.testing.assert_allclose(raw(pixels), ((pixels / 255.0 - 0.5) / 0.25).reshape(3, -1), rtol=1e-6, atol=1e-6)
    a, b = encoders.random_init_like(encoder, 3), encoders.random_init_like(encoder, 3)
    np.testing.assert_array_equal(a(pixels), b(pixels))
    assert not np.allclose(a(pixels), encoder(pixels), atol=1e-3)
    assert a.embedding_dim == encoder.embedding_dim


def test_load_errors(tmp_path):
    with pytest.raises(encoders.EncoderLoadError, match="does not exist"):
        encoders.load_encoder(str(tmp_path / "missing"))
    with pytest.raises(encoders.EncoderLoadError, match="neither a pretraining model_dir"):
        encoders.load_encoder(str(tmp_path))
    path = str(tmp_path / "b.keras")
    backbones.small_convnet((8, 8, 1), width=2).save(path)
    with pytest.raises(encoders.EncoderLoadError, match="mean and std"):
        encoders.load_encoder(path)
    assert encoders.load_encoder(path, mean=(0.5,), std=(0.5,)).image_shape == (8, 8, 1)
