"""A pretraining run killed mid-epoch and restarted with the same command ends where an
uninterrupted run ends: same step count, same epochs logged once, same weights and state."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REPO_ROOT

ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=512", "--test_limit=64", "--width=8",
        "--batch_size=32", "--queue_size=128", "--epochs=4", "--knn_every=0", "--random_init_knn=false",
        "--export=false", "--tensorboard=false", "--plots=false", "--augment=cifar", "--verbose=0"]
STEPS = 512 // 32


def _command(model_dir):
    return [sys.executable, "-m", "trainers.pretrain", *ARGS, f"--model_dir={model_dir}"]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _finish(model_dir, timeout=300):
    done = subprocess.run(_command(model_dir), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_kill_mid_run_then_same_command_resumes_exactly(tmp_path):
    reference = str(tmp_path / "reference")
    _finish(reference)

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(_command(killed), cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_ckpt = os.path.join(killed, "checkpoints", "ckpt-00001.npz")
    deadline = time.time() + 240
    while not os.path.exists(first_ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(os.listdir(os.path.join(killed, "checkpoints")))
    assert saved and all(name.endswith(".npz") for name in saved), saved  # no partial files
    assert len(saved) < 4, "the kill came too late to test anything"

    out = _finish(killed)
    assert "resumed from" in out
    resumed_epoch = int(out.split("(epoch ")[1].split(",")[0])
    assert 1 <= resumed_epoch <= 3 and f"epochs {resumed_epoch + 1}..4" in out

    results = json.load(open(os.path.join(killed, "results.json")))
    assert results["epochs_completed"] == 4 and results["steps_completed"] == 4 * STEPS
    epochs = [json.loads(line)["epoch"] for line in open(os.path.join(killed, "metrics.jsonl"))]
    assert epochs == [1, 2, 3, 4]  # the interrupted epoch is logged once, after it was redone

    a = np.load(os.path.join(reference, "checkpoints", "ckpt-00004.npz"))
    b = np.load(os.path.join(killed, "checkpoints", "ckpt-00004.npz"))
    assert sorted(a.files) == sorted(b.files)
    names = json.loads(str(a["__names__"]))
    assert any("queue" in n for n in names) and "iteration" in names, names
    np.testing.assert_array_equal(b["__names__"], a["__names__"])
    for i, name in enumerate(names):
        key = f"v{i:05d}"
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=name)
