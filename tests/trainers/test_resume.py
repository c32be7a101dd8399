"""A pretraining run killed mid-epoch (SIGKILL), or stopped by SIGTERM (a preemption), and restarted
with the same command ends where an uninterrupted run ends: same step count, same epochs logged
once, same weights and state."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, made_once
from mixmask_tf import checkpoint

# Kills and signals real training processes: the slow tier.
pytestmark = pytest.mark.slow

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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run both tests end against: made once per session (conftest.made_once)."""
    def make(model_dir):
        _finish(model_dir)
        return {"dir": model_dir}

    return made_once(tmp_path_factory, "resume_reference", make)["dir"]


def test_kill_mid_run_then_same_command_resumes_exactly(tmp_path, reference):

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(_command(killed), cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state_file = os.path.join(killed, "checkpoints", "checkpoint")
    deadline = time.time() + 240
    while not os.path.exists(state_file) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _checkpoints(killed)
    assert 1 <= len(saved) < 4, f"the kill came too late to test anything: {saved}"

    out = _finish(killed)
    assert "resumed from" in out
    resumed_epoch = int(out.split("(epoch ")[1].split(",")[0])
    assert 1 <= resumed_epoch <= 3 and f"epochs {resumed_epoch + 1}..4" in out
    _assert_same_end(reference, killed)


def _checkpoints(model_dir):
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return list(state.all_model_checkpoint_paths) if state else []


def _assert_same_end(reference, run, epochs=4):
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["epochs_completed"] == epochs and results["steps_completed"] == epochs * STEPS
    logged = [json.loads(line)["epoch"] for line in open(os.path.join(run, "metrics.jsonl"))]
    assert logged == list(range(1, epochs + 1))  # an interrupted epoch is logged once
    names_a, a, epoch_a, step_a = checkpoint.read_checkpoint(_checkpoints(reference)[-1])
    names_b, b, epoch_b, step_b = checkpoint.read_checkpoint(_checkpoints(run)[-1])
    assert (epoch_a, step_a) == (epoch_b, step_b) == (epochs, 0)
    assert names_a == names_b
    assert any("queue" in n for n in names_a) and "iteration" in names_a, names_a
    for name, x, y in zip(names_a, a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)


def test_sigterm_mid_epoch_saves_then_the_rerun_loses_nothing(tmp_path, reference):
    """SIGTERM (a preemption) in the middle of epoch 2: a checkpoint at that step, exit 143, and the
    rerun finishes the epoch from there, ending exactly where an uninterrupted run ends."""
    run = str(tmp_path / "preempted")
    proc = subprocess.Popen(_command(run) + ["--steps_per_execution=2"], cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # epoch 1's summary line: epoch 2 has just begun
        lines.append(line)
        if line.startswith("epoch 1/4"):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 143, out + proc.stderr.read()[-3000:]
    assert "stopped on a termination signal: saved a checkpoint at epoch 1 + " in out, out
    step = int(out.split("at epoch 1 + ")[1].split(" steps")[0])
    assert 0 < step < STEPS and step % 2 == 0, step  # mid-epoch, on an execution boundary
    assert [json.loads(line)["epoch"] for line in open(os.path.join(run, "metrics.jsonl"))] == [1]
    _, _, epoch, saved_step = checkpoint.read_checkpoint(_checkpoints(run)[-1])
    assert (epoch, saved_step) == (1, step)

    out = _finish(run)
    assert "resumed from" in out and f"(epoch 1 + {step} steps, step {STEPS + step})" in out, out
    _assert_same_end(reference, run)
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert rows[1]["resumed_at_step"] == step and "resumed_at_step" not in rows[2]
