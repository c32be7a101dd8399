"""The saliency branch from the CLI: MoCo v2 trains with its hard-negative term in the metrics; BYOL
refuses the hard negatives in one line, and trains without them."""

import json
import os

import numpy as np
import pytest

from conftest import run_pretrain as _run, run_pretrain_cases

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                                reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")]

SMALL = ["--train_limit=256", "--test_limit=128", "--batch_size=64", "--queue_size=128", "--epochs=1",
         "--random_init_knn=false", "--knn_k=20", "--export=false"]


def test_mocov2_trains_with_the_hard_negative_in_its_metrics(tmp_path):
    result = _run("--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path}", "--branch=saliency",
                  "--saliency_fill=blur", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(open(os.path.join(tmp_path, "metrics.jsonl")).readline())
    assert np.isfinite(row["hard_negative_logit"]) and np.isfinite(row["loss"])
    assert 0.0 < row["fg_ratio"] <= 1.0 and 0.0 < row["mask_ratio"] < 0.3 and 0.2 < row["negative_mask_ratio"] < 1.0
    config = json.load(open(os.path.join(tmp_path, "config.json")))
    assert config["branch"]["name"] == "saliency" and config["branch"]["alpha"] == 2.0
    assert config["input_filter"] is None  # the blur fill needs no filter
    assert os.path.getsize(os.path.join(tmp_path, "masks.png")) > 10_000


def test_byol_refuses_hard_negatives_in_one_line_and_trains_without_them(tmp_path):
    args = ["--flagfile=configs/smoke.cfg", "--framework=byol", "--optimizer=adam", "--learning_rate=0.003",
            "--branch=saliency", *SMALL]
    # The refusal stops before training: the command's `main` in the cases driver (conftest), no second start-up.
    (refused,) = run_pretrain_cases([[*args, f"--model_dir={tmp_path / 'a'}"]])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "BYOL has no negatives" in refused.stderr
    trained = _run(*args, f"--model_dir={tmp_path / 'b'}", "--saliency_hard_negatives=0")
    assert trained.returncode == 0, trained.stderr[-3000:]
    row = json.loads(open(os.path.join(tmp_path / "b", "metrics.jsonl")).readline())
    assert "hard_negative_logit" not in row and 0.0 < row["mask_ratio"] < 0.5 and np.isfinite(row["loss"])
