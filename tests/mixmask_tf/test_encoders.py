"""Loading encoders from a run folder, one of its checkpoints and bare files; the controls."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

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


# --- The head feature: the query encoder's output with its projection head. ---

_HEAD_OPTIONS = {"mocov2": {"embedding_dim": 8, "queue_size": 32}, "mocov1": {"embedding_dim": 8, "queue_size": 32},
                 "simclr": {"embedding_dim": 8}, "byol": {"embedding_dim": 8},
                 "simsiam": {"embedding_dim": 8, "projector_layers": 2}}
# The sub-model of each trainer that holds the projection head, and that head's layer name.
_HEAD_BY_HAND = {"mocov2": ("query_encoder", "head"), "mocov1": ("query_encoder", "head"),
                 "simclr": ("encoder", "projector"), "byol": ("online_encoder", "projector"),
                 "simsiam": ("encoder", "projector")}


@pytest.mark.parametrize("framework", sorted(_HEAD_OPTIONS))
def test_feature_model_is_backbone_then_projection_head(framework):
    keras.utils.set_random_seed(0)
    trainer = models.build_trainer(framework, backbones.small_convnet((16, 16, 1), width=4), seed=0,
                                   **_HEAD_OPTIONS[framework])
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    images = (np.random.default_rng(0).normal(size=(6, 2, 16, 16, 1))).astype(np.float32)
    trainer.train_on_batch(images)  # BatchNorm moving statistics away from their initial values
    x = images[:, 0]
    assert encoders.feature_model(trainer, "backbone") is trainer.backbone
    head = encoders.feature_model(trainer, "head")
    assert head.output_shape == (None, 8)
    encoder_name, layer = _HEAD_BY_HAND[framework]
    by_hand = getattr(trainer, encoder_name).get_layer(layer)(trainer.backbone(x, training=False), training=False)
    np.testing.assert_allclose(head(x, training=False), by_hand, rtol=1e-5, atol=1e-6)
    if framework in ("byol", "simsiam"):  # the projector output z, not the predictor's p
        assert not np.allclose(head(x, training=False), trainer.embed_query(x, training=False), atol=1e-4)
    with pytest.raises(ValueError, match="feature must be one of backbone, head"):
        encoders.feature_model(trainer, "predictor")


def _restored_by_hand(folder, path):
    """The trainer of `folder` with the checkpoint `path` restored by the training code's own path
    (`checkpoint.TrainingCheckpoint.restore`, not mixmask_tf.encoders)."""
    config = json.load(open(os.path.join(folder, "config.json")))
    keras.utils.set_random_seed(5)  # other initial weights: everything must come from the checkpoint
    trainer = models.build_trainer(config["framework"], backbones.small_convnet((16, 16, 1), width=4), seed=0,
                                   **config["framework_options"])
    trainer.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    trainer.optimizer.build(trainer.trainable_variables)
    checkpoint.TrainingCheckpoint(trainer, os.path.dirname(path)).restore(path)
    return trainer


def test_head_encoder_of_run_dir_and_checkpoint(run_dir):
    folder, _ = run_dir
    pixels = np.random.default_rng(4).integers(0, 256, (5, 16, 16, 1)).astype(np.uint8)
    x = ((pixels / 255.0 - 0.5) / 0.25).astype(np.float32)
    ckpts = tf.train.get_checkpoint_state(os.path.join(folder, "checkpoints")).all_model_checkpoint_paths
    for name, path, epoch in ((None, ckpts[-1], 2), ("ckpt-1", ckpts[0], 1)):
        encoder = encoders.load_encoder(folder, checkpoint=name, feature="head")
        assert encoder.embedding_dim == 8 and encoder.metadata["feature"] == "head"
        assert encoder.metadata["epochs"] == epoch and encoder.metadata["checkpoint"] == os.path.abspath(path)
        trainer = _restored_by_hand(folder, path)
        by_hand = trainer.query_encoder.get_layer("head")(trainer.backbone(x, training=False), training=False)
        np.testing.assert_allclose(encoder(pixels), by_hand, rtol=1e-5, atol=1e-6)
    # The backbone feature is unchanged, and says so.
    backbone = encoders.load_encoder(folder)
    assert backbone.metadata["feature"] == "backbone" and backbone.embedding_dim != 8
    # The random-init control of the head: the same backbone + head architecture, freshly initialised.
    control = encoders.random_init_like(encoders.load_encoder(folder, feature="head"), 3)
    assert control.embedding_dim == 8 and control.metadata["feature"] == "head"
    assert not np.allclose(control(pixels), encoders.load_encoder(folder, feature="head")(pixels), atol=1e-3)


def test_head_of_something_without_a_head_is_an_error(run_dir, tmp_path):
    folder, _ = run_dir
    with pytest.raises(encoders.EncoderLoadError, match="holds no projection head"):
        encoders.load_encoder(os.path.join(folder, "backbone.keras"), feature="head")
    export_like = tmp_path / "export"
    export_like.mkdir()
    with pytest.raises(encoders.EncoderLoadError, match="holds no projection head"):
        encoders.load_encoder(str(export_like), feature="head")
    with pytest.raises(ValueError, match="feature must be one of backbone, head"):
        encoders.load_encoder(folder, feature="projector")


def test_head_by_default_takes_the_epoch_of_backbone_keras(tmp_path):
    """A preemption checkpoint (mid-epoch) is skipped; a backbone.keras of another epoch is refused."""
    folder = str(tmp_path)
    keras.utils.set_random_seed(0)
    model = models.build_trainer("mocov2", backbones.small_convnet((16, 16, 1), width=4), seed=0,
                                 **_HEAD_OPTIONS["mocov2"])
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    images = data.synthetic_dataset(16, (16, 16, 1), num_classes=2)[0] / 255.0
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"framework": "mocov2", "framework_options": _HEAD_OPTIONS["mocov2"], "seed": 0, "mean": [0.5],
                   "std": [0.25], "dataset": "synthetic", "backbone": "small_convnet"}, f)
    saver = checkpoint.TrainingCheckpoint(model, os.path.join(folder, "checkpoints"))
    _step(model, images)
    saver.save(1)
    model.backbone.save(os.path.join(folder, "backbone.keras"))
    epoch_end = saver.latest()
    _step(model, images)
    saver.save(1, 1)  # stopped one step into epoch 2
    encoder = encoders.load_encoder(folder, feature="head")
    assert encoder.metadata["checkpoint"] == os.path.abspath(epoch_end) and encoder.metadata["epochs"] == 1
    model.backbone.save(os.path.join(folder, "backbone.keras"))  # no longer the weights of epoch 1
    with pytest.raises(encoders.EncoderLoadError, match="does not hold the weights of backbone.keras"):
        encoders.load_encoder(folder, feature="head")
