"""MSCN from the CLI (SimCLR, BYOL, MoCo v2), and its export: the high-pass filter is in the serving graph.

The judged check: an MSCN export gives the same embedding for an image and for the same image
shifted by a constant (the high-pass filter removes it), through both serving signatures; a
MixMask export of the same recipe does not.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_pretrain as _run, run_pretrain_cases

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                                reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")

SMALL = ["--train_limit=256", "--test_limit=128", "--batch_size=64", "--queue_size=128", "--epochs=1",
         "--random_init_knn=false", "--knn_k=20"]


# The MSCN paper's two frameworks; MoCo v2 trains from the CLI in the export test below. MoCo v1 and
# SimSiam run the same flag plumbing; their MSCN steps are checked in-process (test_multi_view.py
# against NumPy, test_frameworks.py, test_xla_step.py).
@pytest.mark.slow
@pytest.mark.parametrize("framework, extra", [
    ("simclr", ["--optimizer=adam", "--learning_rate=0.003", "--mscn_key_ratio=0.3"]),
    ("byol", ["--optimizer=adam", "--learning_rate=0.003", "--mscn_extra_views=0", "--mscn_focal_prob=1.0"]),
])
def test_mscn_trains_from_the_cli(tmp_path, framework, extra):
    result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path}", f"--framework={framework}",
                  "--branch=mscn", "--export=false", *SMALL, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(open(os.path.join(tmp_path, "metrics.jsonl")).readline())
    assert np.isfinite(row["loss"]) and 0.0 < row["mask_ratio_query"] < 0.5 and "knn_top1" in row
    config = json.load(open(os.path.join(tmp_path, "config.json")))
    assert config["branch"]["name"] == "mscn" and config["input_filter"]["sigma"] == 0.625
    views = 2 if "--mscn_extra_views=0" in extra else 4
    assert config["augment"]["extra_views"] == views - 2
    if "--mscn_key_ratio=0.3" in extra:
        assert row["mask_ratio_key"] > row["mask_ratio_query"]
    assert os.path.getsize(os.path.join(tmp_path, "masks.png")) > 10_000


def _serve(version_dir, images):
    loaded = tf.saved_model.load(version_dir)
    by_pixels = loaded.signatures["serving_default"](images=tf.constant(images))["embedding"].numpy()
    encoded = tf.constant([tf.io.encode_png(image).numpy() for image in images])
    by_bytes = loaded.signatures["serve_bytes"](image_bytes=encoded)["embedding"].numpy()
    return by_pixels, by_bytes


@pytest.mark.slow
def test_mscn_export_removes_a_constant_shift_where_mixmask_does_not(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(40, 180, size=(4, 28, 28, 1)).astype(np.uint8)
    shifted = images + np.uint8(60)  # no clipping: at most 239
    outputs = {}
    for branch in ("mscn", "mixmask"):
        model_dir = tmp_path / branch
        # No montage, curves or TensorBoard: only the export is checked here (the test above checks masks.png).
        result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", f"--branch={branch}", *SMALL,
                      "--plots=false", "--tensorboard=false")
        assert result.returncode == 0, result.stderr[-3000:]
        version = os.path.join(model_dir, "export", "1")
        card = json.load(open(os.path.join(version, "assets.extra", "export.json")))
        outputs[branch] = (_serve(version, images), _serve(version, shifted), card)
    (plain, plain_bytes), (moved, moved_bytes), card = outputs["mscn"]
    assert card["input_filter"]["name"] == "highpass" and card["input_filter"]["sigma"] == 0.625
    scale = np.abs(plain).max()
    assert scale > 0
    np.testing.assert_allclose(moved, plain, atol=1e-4 * scale)
    np.testing.assert_allclose(moved_bytes, plain_bytes, atol=1e-4 * scale)
    np.testing.assert_allclose(plain_bytes, plain, atol=1e-5 * scale)
    (plain, plain_bytes), (moved, moved_bytes), card = outputs["mixmask"]
    assert card["input_filter"] is None
    assert np.abs(moved - plain).max() > 0.05 * np.abs(plain).max()
    assert np.abs(moved_bytes - plain_bytes).max() > 0.05 * np.abs(plain_bytes).max()


BAD_FLAGS = [
    (["--mscn_ratio=1.5"], "ratio must lie in [0, 1)"),
    (["--mscn_focal_prob=2"], "focal_prob must be a probability"),
    (["--highpass_sigma=20"], "radius"),
    (["--mscn_grid_size=40"], "grid"),
]


@pytest.fixture(scope="module")
def bad_flag_results(tmp_path_factory):
    """Every BAD_FLAGS case through the command's `main`, in one interpreter (conftest.run_pretrain_cases)."""
    base = tmp_path_factory.mktemp("bad_mscn_flags")
    return run_pretrain_cases([["--flagfile=configs/smoke.cfg", f"--model_dir={base / str(i)}", "--branch=mscn", *args]
                               for i, (args, _) in enumerate(BAD_FLAGS)])


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)), ids=[" ".join(args) for args, _ in BAD_FLAGS])
def test_bad_mscn_flags_are_one_clear_line(bad_flag_results, case):
    message, result = BAD_FLAGS[case][1], bad_flag_results[case]
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
