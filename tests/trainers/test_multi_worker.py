"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1, started with the README's command.

* the 2-worker run equals a single-process run with the same global batch (2 logical CPUs);
* only the chief writes the run's files, and no worker leaves a temporary folder behind;
* SIGKILL of the chief after the first checkpoint: the other exits promptly with a clear
  message; running both commands again resumes, logs every epoch once, exports once, and ends
  in the state of the uninterrupted run;
* SIGTERM to the other worker mid-epoch: both save at the same step and exit 143; the rerun
  ends in the uninterrupted state.

Each worker costs ~12 s of start-up here: the cases share runs and stay few (marked slow).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from mixmask_tf import checkpoint

pytestmark = pytest.mark.slow

EPOCHS, STEPS = 3, 16
ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=512", "--test_limit=64", "--width=8",
        "--batch_size=32", "--queue_size=128", f"--epochs={EPOCHS}", "--knn_every=1", "--random_init_knn=false",
        "--tensorboard=false", "--plots=false", "--augment=cifar", "--verbose=0"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(tf_config=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start_workers(model_dir, ports):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(len(ports)):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "trainers.pretrain", *ARGS, "--strategy=multi_worker", f"--model_dir={model_dir}"],
            cwd=REPO_ROOT, env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish_workers(model_dir, timeout=400):
    procs = _start_workers(model_dir, _free_ports(2))
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        outs.append((proc.returncode, out, err))
    for code, out, err in outs:
        assert code == 0, out + err[-3000:]
    return outs


def _final_state(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return checkpoint.read_checkpoint(state.all_model_checkpoint_paths[-1])


def _assert_same_state(a_dir, b_dir):
    names_a, a, epoch_a, step_a = _final_state(a_dir)
    names_b, b, epoch_b, step_b = _final_state(b_dir)
    assert (epoch_a, step_a) == (epoch_b, step_b) == (EPOCHS, 0)
    assert names_a == names_b and "iteration" in names_a and any("queue" in n for n in names_a)
    for name, x, y in zip(names_a, a, b):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=2e-5, err_msg=name)


def _epochs_logged(model_dir):
    return [json.loads(line)["epoch"] for line in open(os.path.join(model_dir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, 2 replicas on 2 logical CPUs, the same global batch."""
    model_dir = str(tmp_path_factory.mktemp("single"))
    done = subprocess.run([sys.executable, "-m", "trainers.pretrain", *ARGS, "--strategy=mirrored", "--cpu_devices=2",
                           f"--model_dir={model_dir}"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return model_dir, done.stdout


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("two_workers"))
    return model_dir, _finish_workers(model_dir)


def test_two_workers_equal_one_process_and_only_the_chief_writes(single_process, two_workers):
    single_dir, single_out = single_process
    model_dir, outs = two_workers
    assert "2 replica(s) on 1 worker(s)" in single_out
    (_, chief_out, _), (_, other_out, _) = outs
    assert "2 replica(s) on 2 worker(s), global batch 32 (16 per replica)" in chief_out
    assert "kNN top-1" in chief_out and "exported SavedModel" in chief_out
    assert other_out.strip().splitlines() == ["worker 1: pretraining done"], other_out  # nothing else
    _assert_same_state(single_dir, model_dir)
    # The run folder holds what a single process writes, no temporary worker folder, one export.
    assert sorted(os.listdir(model_dir)) == sorted(os.listdir(single_dir))
    assert not [p for p in os.listdir(os.path.join(model_dir, "checkpoints")) if p.startswith(".tmp")]
    assert os.listdir(os.path.join(model_dir, "export")) == ["1"]
    assert _epochs_logged(model_dir) == list(range(1, EPOCHS + 1))
    # The kNN monitor on the chief gives what the single process measured.
    knn = [json.loads(line)["knn_top1"] for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    knn_single = [json.loads(line)["knn_top1"] for line in open(os.path.join(single_dir, "metrics.jsonl"))]
    np.testing.assert_allclose(knn, knn_single, atol=1.6)  # one test image of 64 may flip


def test_kill_the_chief_the_other_exits_and_both_resume(tmp_path, two_workers):
    """SIGKILL of the chief after the first checkpoint: the other worker stops promptly with a clear
    message; both commands again: every epoch logged once, one export, the uninterrupted state."""
    model_dir = str(tmp_path / "run")
    procs = _start_workers(model_dir, _free_ports(2))
    chief, other = procs
    try:
        state_file = os.path.join(model_dir, "checkpoints", "checkpoint")
        deadline = time.time() + 300
        while not os.path.exists(state_file) and chief.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the first checkpoint (end of epoch 1)
        assert chief.poll() is None, "the run ended before a worker could be killed"
        chief.send_signal(signal.SIGKILL)
        start = time.time()
        out, err = other.communicate(timeout=120)
        waited = time.time() - start
        assert other.returncode == 3, out + err[-2000:]
        assert "lost contact with another worker" in err, err[-3000:]
        assert waited < 60, f"the surviving worker took {waited:.0f} s to stop"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert _epochs_logged(model_dir)[:1] == [1]
    _rerun_and_compare(model_dir, two_workers[0])


def test_sigterm_to_one_worker_saves_on_both_and_the_rerun_loses_nothing(tmp_path, two_workers):
    """SIGTERM (a preemption) to the non-chief worker in epoch 2: both workers agree on the step, save
    there together and exit 143; both commands again finish from that step."""
    model_dir = str(tmp_path / "run")
    procs = _start_workers(model_dir, _free_ports(2))
    chief, other = procs
    try:
        for line in chief.stdout:  # the chief's summary of epoch 1: epoch 2 has begun
            if line.startswith("epoch 1/"):
                other.send_signal(signal.SIGTERM)
                break
        outs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 143, out + err[-3000:]
        assert "stopped on a termination signal: saved a checkpoint at epoch " in out, out
    chief_out = outs[0][0]
    where = chief_out.split("saved a checkpoint at epoch ")[1].split(" in ")[0]
    assert where == outs[1][0].split("saved a checkpoint at epoch ")[1].split(" in ")[0]  # the same step
    print(f"both workers saved at epoch {where}")
    _, _, epoch, step = _final_state_any(model_dir)
    assert (epoch, step) in {(1, s) for s in range(1, STEPS)} | {(2, 0)}, (epoch, step)
    assert _epochs_logged(model_dir) == list(range(1, epoch + 1))
    _rerun_and_compare(model_dir, two_workers[0])


def _final_state_any(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return checkpoint.read_checkpoint(state.all_model_checkpoint_paths[-1])


def _rerun_and_compare(model_dir, reference_dir):
    outs = _finish_workers(model_dir)
    assert "resumed from" in outs[0][1]
    assert _epochs_logged(model_dir) == list(range(1, EPOCHS + 1))  # every epoch logged once
    assert os.listdir(os.path.join(model_dir, "export")) == ["1"]  # one export
    _assert_same_state(reference_dir, model_dir)
