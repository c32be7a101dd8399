"""examples/downstream_classifier.py: a classifier on the exported encoder, frozen then fine-tuned."""

import ast
import json
import os
import subprocess
import sys

import keras
import pytest
from conftest import REPO_ROOT

from examples import downstream_classifier
from export import saved_model
from mixmask_tf import backbones

EXAMPLE = os.path.join(REPO_ROOT, "examples", "downstream_classifier.py")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_example_trains_head_then_fine_tunes_encoder(tmp_path):
    keras.utils.set_random_seed(0)
    export_dir = str(tmp_path / "export")
    saved_model.export_backbone(backbones.small_convnet((28, 28, 1), width=4), export_dir, (0.286,), (0.353,))
    os.makedirs(os.path.join(export_dir, ".tmp-export-host-1-0123abcd"))  # a stale temp folder: not a version
    result = subprocess.run(
        [sys.executable, "-m", "examples.downstream_classifier", f"--export_dir={export_dir}",
         "--epochs_frozen=1", "--epochs_unfrozen=1", "--train_limit=512", "--test_limit=256", "--batch_size=32"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "frozen encoder (1 epochs" in result.stdout and "unfrozen encoder (1 epochs" in result.stdout
    assert result.stdout.count("test accuracy") == 2
    report = json.loads(result.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert report["export"] == os.path.join(export_dir, "1")
    assert report["train_examples"] == 512 and report["test_examples"] == 256
    # Frozen: only the head's Dense kernel and bias train; the encoder does not move at all.
    assert report["frozen_trainable_weights"] == 2
    assert report["frozen_encoder_weight_change"] == 0.0 and report["frozen_embedding_change"] == 0.0
    # Unfrozen: the encoder's 4 conv kernels + 4 BatchNorm gammas/betas train too, and the
    # SavedModel's serving function computes different embeddings afterwards.
    assert report["unfrozen_trainable_weights"] == 2 + 4 + 8
    assert report["unfrozen_encoder_weight_change"] > 1e-4 and report["unfrozen_embedding_change"] > 1e-4
    for phase in ("frozen", "unfrozen"):
        assert 0.2 < report[f"{phase}_test_accuracy"] <= 1.0  # chance is 0.1 (10 classes)


def test_latest_version_and_missing_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SavedModel version folder"):
        downstream_classifier.latest_version(str(tmp_path))
    for name in ("2", "10", ".tmp-export-host-1-0123abcd", "notes"):
        os.makedirs(tmp_path / name)
    assert downstream_classifier.latest_version(str(tmp_path)) == os.path.join(str(tmp_path), "10")


def test_example_imports_only_serving_side_modules():
    tree = ast.parse(open(EXAMPLE).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"argparse", "json", "os", "sys", "keras", "numpy", "tensorflow", "mixmask_tf.data"}
