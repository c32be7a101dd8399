"""The saliency branch: where it masks (given a localisation network with a known map), its hard
negatives, its options and errors. The pure ops are checked against NumPy in tests/mixmask_tf/ops/test_saliency_masks.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones, branches
from mixmask_tf.models import build_trainer

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def localisation(tmp_path_factory):
    """A .keras localisation network whose 7 x 7 map is each 4 x 4 cell's mean pixel (known saliency)."""
    inputs = keras.Input(SHAPE)
    model = keras.Model(inputs, keras.layers.AveragePooling2D(4)(inputs))
    path = str(tmp_path_factory.mktemp("loc") / "cells.keras")
    model.save(path)
    return path


def _views(n=32, seed=0):
    """Two views whose left 3 cell columns are bright (foreground by the cell-mean map), the rest dark."""
    rng = np.random.default_rng(seed)
    x = rng.normal(-1.0, 0.3, size=(2, n) + SHAPE).astype(np.float32)
    x[..., :12, :] += 3.0
    return tf.constant(x[0]), tf.constant(x[1])


def _masked_cells(before, after):
    changed = np.asarray(before) != np.asarray(after)
    return changed[..., 0].reshape(-1, 7, 4, 7, 4).any(axis=(2, 4))


def test_query_masks_split_foreground_and_background_and_negatives_mask_foreground_only(localisation):
    branch = branches.build_branch("saliency", fill="mean", localisation=localisation, query_ratio=(0.2, 0.2),
                                   negative_ratio=(0.5, 0.5))
    branch.validate(SHAPE)
    x1, x2 = _views()
    out = branch.prepare_views((x1, x2), tf.constant([1, 2]))
    foreground = np.zeros((7, 7), bool)
    foreground[:, :3] = True  # cell means: bright 2.0 vs dark -1.0; threshold mean - 0.6 std = 0.03
    fg_fraction = foreground.mean()
    query = _masked_cells(x1, out.views[0])
    # r = 0.2: round(min(0.2 · 3/7, cap none) · 49) = 4 foreground cells, int(49 · 0.2) - 4 = 5 background.
    n_fg = int(np.round(min(0.2 * fg_fraction, 1.0) * 49))
    assert np.all(query[:, foreground].sum(1) == n_fg) and np.all(query[:, ~foreground].sum(1) == int(49 * 0.2) - n_fg)
    np.testing.assert_array_equal(np.asarray(out.views[1]), np.asarray(x2))  # the key view stays clean
    (negative,) = out.negatives
    assert negative.scale == 2.0 and negative.name == "hard_negative"
    cells = _masked_cells(x2, negative.images)
    assert not cells[:, ~foreground].any()  # only foreground cells of the key view
    assert np.all(cells[:, foreground].sum(1) == int(np.round(0.5 * foreground.sum())))
    np.testing.assert_allclose(float(out.stats["fg_ratio"]), fg_fraction, atol=1e-6)
    np.testing.assert_allclose(float(out.stats["mask_ratio"]), 9 / 49, atol=1e-6)
    maps = branch.display_maps((x1, x2))
    np.testing.assert_array_equal(np.asarray(maps["foreground (view 1)"])[0, ::4, ::4, 0], foreground)


def test_highpass_fill_filters_both_views_and_fills_noise(localisation):
    branch = branches.build_branch("saliency", localisation=localisation)
    branch.validate(SHAPE)
    input_filter = branch.input_filter_for(SHAPE)
    assert input_filter is not None  # applied by prepare_views itself, to the unfiltered views
    x1, x2 = _views()
    out = branch.prepare_views((x1, x2), tf.constant([3, 4]))
    np.testing.assert_allclose(np.asarray(out.views[1]), np.asarray(input_filter(x2)), atol=1e-6)
    kept = np.asarray(out.views[0]) == np.asarray(input_filter(x1))
    assert 0.0 < 1.0 - kept.mean() < 0.5


def test_options_config_and_errors(tmp_path):
    branch = branches.build_branch("saliency", fill="blur")
    rebuilt = branches.build_branch(**branch.get_config())
    assert rebuilt.get_config() == branch.get_config()
    assert branch.query_masking == (0.0, 1.0, None) and branch.uses_negatives
    assert branches.build_branch("saliency").query_masking == (0.2, 0.3, 0.55)  # the authors' high-pass strategy
    assert not branches.build_branch("saliency", hard_negatives=0).uses_negatives
    for options, message in ((dict(fill="sharpen"), "fill must be one of"), (dict(query_ratio=(0.5, 0.1)), "query_ratio"),
                             (dict(hard_negatives=-1), "hard_negatives"), (dict(localisation="vgg"), "localisation"),
                             (dict(localisation=str(tmp_path / "none.keras")), "does not exist")):
        with pytest.raises(ValueError, match=message):
            branches.build_branch("saliency", **options)
    resnet = branches.build_branch("saliency", localisation="resnet50_imagenet", mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(ValueError, match="not on this machine.*nothing is downloaded"):
        resnet.validate((64, 64, 3))


def test_byol_and_simsiam_refuse_hard_negatives_and_train_without_them():
    for framework in ("byol", "simsiam"):
        with pytest.raises(ValueError, match="has no negatives"):
            build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=branches.build_branch("saliency"))
    keras.utils.set_random_seed(0)
    model = build_trainer("byol", backbones.small_convnet(SHAPE, width=4), embedding_dim=8,
                          branch=branches.build_branch("saliency", hard_negatives=0))
    model.compile(optimizer="sgd")
    data = np.random.default_rng(0).normal(size=(16, 2) + SHAPE).astype(np.float32)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), verbose=0).history
    assert sorted(history) == ["fg_ratio", "loss", "loss_clean", "mask_ratio"]


def test_default_localisation_reads_the_momentum_encoder():
    model = build_trainer("mocov2", backbones.small_convnet(SHAPE, width=4), queue_size=64,
                          branch=branches.build_branch("saliency"))
    model.compile(optimizer="sgd")
    feature_model = model.branch._feature_model
    assert feature_model.output_shape == (None, 7, 7, 16)
    key_weights = {id(w) for w in model.target_backbone().weights}
    assert key_weights and {id(w) for w in feature_model.weights} <= key_weights  # the key encoder's own weights
