"""Export: TF Serving layout, atomic versions, and serving in a process that imports only TF."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from export import saved_model
from mixmask_tf import backbones

SERVE_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, images_path = sys.argv[1], sys.argv[2]
model = tf.saved_model.load(path)
fn = model.signatures["serving_default"]
images = np.load(images_path)
out = fn(images=tf.constant(images))
np.save(images_path + ".out.npy", out["embedding"].numpy())
print(json.dumps({"inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_input_signature[1].items()},
                  "outputs": list(out)}))
"""


def test_export_round_trip_in_fresh_process(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = backbones.small_convnet((12, 12, 1), width=4)
    export_dir = str(tmp_path / "export")
    path = saved_model.export_backbone(backbone, export_dir, mean=(0.3,), std=(0.2,), metadata={"framework": "mocov2"})
    assert path == os.path.join(export_dir, "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    card = json.load(open(os.path.join(path, "assets.extra", "export.json")))
    assert card["embedding_dim"] == 16 and card["framework"] == "mocov2"
    assert card["input"]["dtype"] == "uint8"
    images = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 1)).astype(np.uint8)
    images_path = str(tmp_path / "images.npy")
    np.save(images_path, images)
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, path, images_path],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    signature = json.loads(result.stdout.strip().splitlines()[-1])
    assert signature == {"inputs": {"images": ["uint8", [None, 12, 12, 1]]}, "outputs": ["embedding"]}
    served = np.load(images_path + ".out.npy")
    expected = backbone((images.astype(np.float32) / 255.0 - 0.3) / 0.2, training=False)
    np.testing.assert_allclose(served, np.asarray(expected), rtol=1e-4, atol=1e-5)
    # The .keras backbone reloads and gives the same features.
    reloaded = keras.models.load_model(os.path.join(path, "assets.extra", "backbone.keras"))
    np.testing.assert_allclose(reloaded((images / 255.0 - 0.3) / 0.2), expected, rtol=1e-4, atol=1e-5)


def test_versions_are_sequential_and_never_overwritten(tmp_path):
    backbone = backbones.small_convnet((8, 8, 1), width=2)
    export_dir = str(tmp_path)
    assert saved_model.next_version(export_dir) == 1
    saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,))
    second = saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,))
    assert second.endswith(os.sep + "2")
    with pytest.raises(FileExistsError):
        saved_model.export_backbone(backbone, export_dir, (0.5,), (0.5,), version=2)
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # no temporary folders left behind


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
