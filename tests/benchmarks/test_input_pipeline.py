"""The folder benchmark's comparison pipelines: what they make, and the interleaved rounds end to end."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module



def _photos(folder, count=6, seed=0):
    """JPEGs of smooth colour fields at a few sizes, full-resolution chroma (see ops.decode_resized_crops_uint8)."""
    rng = np.random.default_rng(seed)
    out = os.path.join(folder, "train", "photos")
    os.makedirs(out)
    for i in range(count):
        h, w = [(40, 56), (56, 40), (48, 48)][i % 3]
        smooth = tf.image.resize(rng.random((1, 4, 5, 3)), [h, w]).numpy()[0] * 255
        tf.io.write_file(os.path.join(out, f"p{i}.jpg"),
                         tf.io.encode_jpeg(np.asarray(smooth, np.uint8), quality=95, chroma_downsampling=False))
    return folder


# benchmarks.input_pipeline defines absl flags when imported, as every benchmark module does: its
# pieces are checked in a subprocess, so that it never meets another module's flags in a test worker.
_IN_A_SUBPROCESS = r"""
import sys
import numpy as np
import tensorflow as tf
from benchmarks import input_pipeline
from mixmask_tf import augment, data
from mixmask_tf.augment import views as view_ops

folder = sys.argv[1]
source = data.open_source("folder", "train", data_dir=folder, image_size=16, verify=False)
views = augment.TwoViewAugment.from_preset("mocov2", 16, 3, source.info.mean, source.info.std)
contents = tf.constant([open(p, "rb").read() for p in source.paths])
sizes = tf.stack([tf.io.extract_jpeg_shape(c)[:2] for c in contents])
seed = tf.constant([5, 6], tf.int64)
packed = views.batch_encoded(contents, sizes, seed, 3, packed=True)
crops, _ = view_ops.unpack_views(packed, 2, 16, 3)
for decode_once in ("cheaper", "always", "never"):
    got = input_pipeline.DecodeOnceHostShare(views, decode_once).batch_encoded(contents, sizes, seed, 3)
    assert got.dtype == tf.uint8 and got.shape == crops.shape
    # The same windows: at most one level apart (a window's border may decode differently).
    assert np.abs(got.numpy().astype(int) - crops.numpy().astype(int)).max() <= 1, decode_once
paths = sorted(source.paths)
batch = next(iter(input_pipeline.minimal_tf_data(paths, 4, 16))).numpy()
assert batch.shape == (4, 2, 16, 16, 3) and batch.dtype == np.uint8
assert not np.array_equal(batch[:, 0], batch[:, 1])  # two independent views
print("ok")
"""


def test_decode_once_host_share_and_the_minimal_tf_data_pipeline(tmp_path):
    """The decode-once crops equal the device mode's host share (to a level); the minimal tf.data
    pipeline gives two uint8 views per file."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    folder = _photos(str(tmp_path))
    done = subprocess.run([sys.executable, "-c", _IN_A_SUBPROCESS, folder], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.mark.slow
def test_folder_rounds_interleave_every_pipeline_and_say_which_were_left_out(tmp_path):
    folder = _photos(str(tmp_path / "photos"), count=8)
    out = str(tmp_path / "rows.json")
    modes = "full_image,host_share,host_share_decode_once,tf_minimal,torchvision_mocov2"
    result = run_module("benchmarks.input_pipeline", f"--folder={folder}", "--image_size=16", "--batch_size=4",
                        "--batches=1", "--warmup=1", "--rounds=2", f"--folder_modes={modes}", f"--json={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torchvision_mocov2 left out: no --torch_python" in result.stdout
    lines = [line.split()[:4] for line in result.stdout.splitlines() if line.startswith("round ")]
    order = ["full_image", "host_share", "host_share_decode_once", "tf_minimal"]
    assert [(r, m) for _, r, _, m in lines] == [(str(r), m) for r in (1, 2) for m in order]
    written = json.load(open(out))
    assert [row["mode"] for row in written["rows"]] == order and written["rounds"] == 2
    for row in written["rows"]:
        assert len(row["images_per_second"]) == 2 and min(row["images_per_second"]) > 0
        assert row["cores_for_one_gpu"] == pytest.approx(written["gpu_images_per_second"] / row["median_per_core"])
    bad = run_module("benchmarks.input_pipeline", f"--folder={folder}", "--folder_modes=full_image,fastest")
    assert bad.returncode == 2 and "--folder_modes takes" in bad.stderr
