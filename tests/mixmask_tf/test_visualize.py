"""Mask montages and training curves (mixmask_tf.visualize)."""

import json
import os

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import visualize
from mixmask_tf.ops import mixing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)


def _normalized_batch(n=8, size=16, channels=3, seed=0):
    """Normalised float images whose un-normalised pixels lie in [0, 1] (no clipping)."""
    pixels = np.random.default_rng(seed).uniform(size=(n, size, size, channels)).astype(np.float32)
    mean, std = np.asarray(MEAN[:channels], np.float32), np.asarray(STD[:channels], np.float32)
    return (pixels - mean) / std, pixels


def _assert_png(path, height, width):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert abs(image.shape[0] - height) <= 2 and abs(image.shape[1] - width) <= 2, image.shape
    assert image.shape[2] in (3, 4)
    leftovers = [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".tmp-")]
    assert leftovers == []
    return image


def test_montage_mixtures_match_numpy_and_training():
    x, pixels = _normalized_batch()
    arrays = visualize.montage_arrays(x, seed=3, grid_size=4, ratio=0.5, num_examples=4,
                                      mean=MEAN, std=STD)
    np.testing.assert_allclose(arrays["images"], pixels[:4], atol=1e-6)
    for kind in ("blocked", "discrete"):
        m = arrays[f"{kind}_masks"]
        assert m.shape == (4, 16, 16, 1)
        assert set(np.unique(m)) == {0.0, 1.0}  # a real mixture: both images present
        # One mask shared by the batch (the training default), constant on each 4x4 cell.
        np.testing.assert_array_equal(m, np.broadcast_to(m[:1], m.shape))
        cells = m[0, :, :, 0].reshape(4, 4, 4, 4)
        assert np.all(cells == cells[:, :1, :, :1])
        img = arrays["images"]
        expected = m * img + (1.0 - m) * img[::-1]
        np.testing.assert_allclose(arrays[f"{kind}_mixed"], expected, atol=1e-6)
        assert not np.allclose(arrays[f"{kind}_mixed"], img)
        np.testing.assert_allclose(arrays[f"{kind}_lambda"], m.mean(axis=(1, 2, 3)), atol=1e-6)
        # Exactly what a training step with this seed feeds the query encoder.
        mixture = mixing.mixmask(tf.constant(x[:4]), tf.constant([0, 3], tf.int64), 4,
                                 mask_type=kind, ratio=0.5)
        np.testing.assert_allclose(
            arrays[f"{kind}_mixed"], mixture.images.numpy() * np.float32(STD) + np.float32(MEAN),
            atol=1e-5)
    assert not np.array_equal(arrays["blocked_masks"], arrays["discrete_masks"])


def test_montage_is_deterministic_in_the_seed_and_per_sample_masks_differ():
    x, _ = _normalized_batch()
    a = visualize.montage_arrays(x, seed=5, grid_size=4, mean=MEAN, std=STD)
    b = visualize.montage_arrays(x, seed=(0, 5), grid_size=4, mean=MEAN, std=STD)
    c = visualize.montage_arrays(x, seed=6, grid_size=4, mean=MEAN, std=STD)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in ("blocked_masks", "discrete_masks"))
    per = visualize.montage_arrays(x, seed=5, grid_size=4, num_examples=6, mean=MEAN, std=STD,
                                   per_sample=True)
    m = per["discrete_masks"]
    assert m.shape[0] == 6 and len({m[i].tobytes() for i in range(6)}) > 1
    np.testing.assert_allclose(per["discrete_mixed"], m * per["images"] + (1 - m) * per["images"][::-1],
                               atol=1e-6)


def test_montage_uint8_grayscale_and_two_view_input():
    raw = np.random.default_rng(1).integers(0, 256, size=(8, 16, 16), dtype=np.uint8)
    arrays = visualize.montage_arrays(raw, seed=0, grid_size=4, num_examples=3)
    assert arrays["images"].shape == (3, 16, 16, 1)
    np.testing.assert_allclose(arrays["images"][..., 0], raw[:3] / 255.0, atol=1e-6)
    m = arrays["blocked_masks"]
    np.testing.assert_allclose(arrays["blocked_mixed"], m * arrays["images"] + (1 - m) * arrays["images"][::-1],
                               atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        visualize.montage_arrays(raw, seed=0, grid_size=4, mean=0.5, std=0.5)
    # A two-view batch [N, 2, H, W, C]: the query view (index 0) is shown.
    x, pixels = _normalized_batch()
    two_view = np.stack([x, -x], axis=1)
    arrays = visualize.montage_arrays(two_view, seed=0, grid_size=4, mean=MEAN, std=STD)
    np.testing.assert_allclose(arrays["images"], pixels[:4], atol=1e-6)
    with pytest.raises(ValueError, match="grid size"):
        visualize.montage_arrays(x, seed=0, grid_size=32)


def test_mask_montage_tiles_rows_in_order():
    x, _ = _normalized_batch(channels=1)
    tiled = visualize.mask_montage(x, seed=2, grid_size=4, num_examples=3, mean=MEAN[0], std=STD[0], pad=2)
    arrays = visualize.montage_arrays(x, seed=2, grid_size=4, num_examples=3, mean=MEAN[0], std=STD[0])
    assert tiled.shape == (5 * 16 + 4 * 2, 3 * 16 + 2 * 2, 3)
    assert tiled.min() >= 0.0 and tiled.max() <= 1.0
    for r, (key, _) in enumerate(visualize.MONTAGE_ROWS):
        for j in range(3):
            tile = tiled[r * 18:r * 18 + 16, j * 18:j * 18 + 16]
            np.testing.assert_array_equal(tile, np.repeat(arrays[key][j], 3, axis=-1))


def test_save_mask_montage_png(tmp_path):
    x, _ = _normalized_batch()
    path = tmp_path / "sub" / "montage.png"
    arrays = visualize.save_mask_montage_png(str(path), x, seed=0, grid_size=4, ratio=0.5, mean=MEAN,
                                             std=STD, num_examples=4, tile_inches=1.0, dpi=50)
    assert arrays["images"].shape == (4, 16, 16, 3)
    # (5 * 1.0 + 0.4) x (4 + 0.6) * 1.0 inches at 50 dpi.
    image = _assert_png(str(path), 270, 230)
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_png_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "curves.png"
    path.write_bytes(b"previous")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tf.io.gfile, "rename", lambda src, dst, overwrite=False: fail(src, dst))
    with pytest.raises(OSError, match="disk full"):
        visualize.save_curves_png(str(path), [{"epoch": 1, "loss": 1.0}])
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["curves.png"]  # the temporary file was removed
    monkeypatch.undo()
    visualize.save_curves_png(str(path), [{"epoch": 1, "loss": 1.0}])
    _assert_png(str(path), 600, 700)


def test_curves_with_missing_keys(tmp_path):
    records = [
        {"epoch": 1, "loss": 3.0, "loss_clean": 2.0, "loss_mix": 0.6, "lambda": 0.5, "seconds": 1.0},
        {"epoch": 2, "loss": 2.5, "loss_clean": 1.8, "knn_top1": 30.0, "learning_rate": 0.1},
        {"epoch": 3, "loss": float("nan"), "loss_switch": "n/a", "knn_top1": None},
        {"loss": 2.0},  # no epoch: its position (4) is used
    ]
    path = tmp_path / "curves.png"
    plotted = visualize.save_curves_png(str(path), records, title="run", width_inches=4, height_inches=3,
                                        dpi=50)
    assert plotted == {"loss": ["loss", "loss_clean", "loss_mix"], "monitor": ["knn_top1", "lambda"]}
    _assert_png(str(path), 150, 200)
    assert visualize._series(records, "loss")[0] == [1.0, 2.0, 3.0, 4]
    assert visualize._series(records, "knn_top1") == ([2.0], [30.0])


def test_curves_without_data_write_a_no_data_figure(tmp_path):
    for records, expected in (([], {"loss": [], "monitor": []}),
                              ([{"epoch": 1, "knn_top1": 12.5}], {"loss": [], "monitor": ["knn_top1"]})):
        path = tmp_path / "curves.png"
        assert visualize.save_curves_png(str(path), records, dpi=40) == expected
        _assert_png(str(path), 240, 280)


def test_load_metrics_jsonl(tmp_path):
    assert visualize.load_metrics_jsonl(str(tmp_path / "missing.jsonl")) == []
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1, "loss": 1.0}) + "\n\n[1, 2]\n" + json.dumps({"epoch": 2})
                    + '\n{"epoch": 3, "lo')  # a line cut short by a kill
    assert visualize.load_metrics_jsonl(str(path)) == [{"epoch": 1, "loss": 1.0}, {"epoch": 2}]


def test_views_montage_shows_each_mscn_view_before_and_after_the_branch(tmp_path):
    from mixmask_tf import branches

    branch = branches.build_branch("mscn", grid_size=4, ratio=0.3)
    branch.validate((16, 16, 3))
    views = np.random.default_rng(0).normal(size=(6, 4, 16, 16, 3)).astype(np.float32)
    arrays = visualize.save_views_montage_png(str(tmp_path / "masks.png"), views, branch, seed=5,
                                              mean=(0.5,) * 3, std=(0.25,) * 3, num_examples=3)
    assert arrays["maps"] == {}  # MSCN shows no maps (the saliency branch shows its foreground cells)
    assert sorted(k for k in arrays if k not in ("stats", "maps")) == sorted(
        [f"view{v}" for v in range(1, 5)] + [f"network{v}" for v in range(1, 5)])
    filtered = tuple(branch.input_filter_for((16, 16, 3))(tf.constant(views[:3, v])) for v in range(4))
    expected = branch.mask_views(filtered, tf.constant([0, 5])).views
    for v in range(4):
        np.testing.assert_allclose(arrays[f"view{v + 1}"], visualize.to_display(views[:3, v], 0.5, 0.25))
        np.testing.assert_allclose(arrays[f"network{v + 1}"], np.clip(0.5 + expected[v].numpy() * 0.25, 0, 1),
                                   atol=1e-6)
    assert 0 < arrays["stats"]["mask_ratio_query"] < 1
    assert matplotlib.image.imread(str(tmp_path / "masks.png")).shape[0] > 600  # 8 rows
