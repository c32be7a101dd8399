"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1, started with the README's command.

* the 2-worker run equals a single-process run with the same global batch (2 logical CPUs);
* only the chief writes the run's files, and no worker leaves a temporary folder behind;
* SIGKILL of the chief after the first checkpoint: the other exits promptly with a clear
  message; running both commands again resumes from that checkpoint;
* SIGTERM to the other worker of that resumed run, early in an epoch: both save at the same
  step and exit 143; running both commands again resumes mid-epoch, finishes that epoch and the
  next one (two `fit` phases in one process), logs every epoch once, exports once, and ends in the
  state of the uninterrupted run.

A run costs ~50 s here (~12 s of start-up per worker, ~20 s to trace the first epoch; each further
epoch ~2 s), so runs are few and shared (marked slow): the reference single-process run, the
uninterrupted 2-worker run and ONE interrupted run folder (SIGKILL, then SIGTERM, then the final
rerun: three 2-worker launches) serve the three tests. Under pytest-xdist (the README's `-n 2`)
each of those is made once per session, by the first test worker that needs it, and the other
worker reads its record (a file lock in the session's shared temporary folder).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, made_once
from mixmask_tf import checkpoint

pytestmark = pytest.mark.slow

# 4 epochs: the SIGTERM lands in epoch 3 of the resumed run, so the final rerun resumes mid-epoch 3
# and then runs epoch 4 as a second `fit` phase. 256 images at batch 32: 8 steps per epoch.
EPOCHS, STEPS = 4, 8
ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=256", "--test_limit=64", "--width=8",
        "--batch_size=32", "--queue_size=128", f"--epochs={EPOCHS}", "--knn_every=1", "--random_init_knn=false",
        "--tensorboard=false", "--plots=false", "--augment=cifar", "--verbose=0"]
EPOCH_LINE = re.compile(r"^epoch \d+/\d+ ")


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


def _start_workers(model_dir):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "trainers.pretrain", *ARGS, "--strategy=multi_worker", f"--model_dir={model_dir}"],
            cwd=REPO_ROOT, env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _run_workers_to_end(model_dir, timeout=400):
    """Both workers' commands, to their end: [(exit status, stdout, end of stderr)] (chief first)."""
    procs = _start_workers(model_dir)
    try:
        return [(proc.returncode, out, err[-3000:])
                for proc, (out, err) in ((proc, proc.communicate(timeout=timeout)) for proc in procs)]
    finally:
        _stop(procs)


def _assert_succeeded(outs):
    for code, out, err in outs:
        assert code == 0, out + err


def _latest_checkpoint(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return checkpoint.read_checkpoint(state.all_model_checkpoint_paths[-1]) if state else None


def _progress(model_dir):
    """(completed epochs, steps into the next) of the newest checkpoint, or None."""
    latest = _latest_checkpoint(model_dir)
    return None if latest is None else [latest[2], latest[3]]


def _assert_same_state(a_dir, b_dir):
    names_a, a, epoch_a, step_a = _latest_checkpoint(a_dir)
    names_b, b, epoch_b, step_b = _latest_checkpoint(b_dir)
    assert (epoch_a, step_a) == (epoch_b, step_b) == (EPOCHS, 0)
    assert names_a == names_b and "iteration" in names_a and any("queue" in n for n in names_a)
    for name, x, y in zip(names_a, a, b):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=2e-5, err_msg=name)


def _epochs_logged(model_dir):
    path = os.path.join(model_dir, "metrics.jsonl")
    return [json.loads(line)["epoch"] for line in open(path)] if os.path.exists(path) else []


def _where(epoch, step):
    """How pretrain.py names a checkpoint's position ("epoch 2 + 1 steps")."""
    return f"epoch {epoch}" + (f" + {step} steps" if step else "")


def _make_single_process(model_dir):
    done = subprocess.run([sys.executable, "-m", "trainers.pretrain", *ARGS, "--strategy=mirrored", "--cpu_devices=2",
                           f"--model_dir={model_dir}"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=400)
    return {"dir": model_dir, "code": done.returncode, "out": done.stdout, "err": done.stderr[-3000:]}


def _make_two_workers(model_dir):
    return {"dir": model_dir, "outs": _run_workers_to_end(model_dir)}


def _make_interrupted(model_dir):
    """One run folder, interrupted twice: SIGKILL of the chief after the first checkpoint; both
    commands again, SIGTERM to the other worker once that run has finished an epoch; both commands
    again, to the end. Records what each stage left; the tests assert on it."""
    record = {"dir": model_dir}
    procs = _start_workers(model_dir)
    chief, other = procs
    try:
        state_file = os.path.join(model_dir, "checkpoints", "checkpoint")
        deadline = time.time() + 300
        while not os.path.exists(state_file) and chief.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the first checkpoint (end of epoch 1)
        kill = record["kill"] = {"chief_was_running": chief.poll() is None}
        chief.send_signal(signal.SIGKILL)
        start = time.time()
        out, err = other.communicate(timeout=120)
        kill.update(waited=time.time() - start, other_code=other.returncode, other_out=out, other_err=err[-3000:])
    finally:
        _stop(procs)
    kill.update(progress=_progress(model_dir), epochs_logged=_epochs_logged(model_dir))

    procs = _start_workers(model_dir)
    chief, other = procs
    term = record["sigterm"] = {"after": None}
    try:
        head = []
        for line in chief.stdout:  # the chief's first epoch summary: the next epoch has begun
            head.append(line)
            if EPOCH_LINE.match(line):
                other.send_signal(signal.SIGTERM)
                term["after"] = line.strip()
                break
        outs = [proc.communicate(timeout=120) for proc in procs]
        outs[0] = ("".join(head) + outs[0][0], outs[0][1])
        term["outs"] = [(proc.returncode, out, err[-3000:]) for proc, (out, err) in zip(procs, outs)]
    finally:
        _stop(procs)
    term.update(progress=_progress(model_dir), epochs_logged=_epochs_logged(model_dir))

    record["final_outs"] = _run_workers_to_end(model_dir)
    # What a scheduler does when it restarts a finished job: both commands once more.
    record["rerun_outs"] = _run_workers_to_end(model_dir)
    record["after_rerun"] = {"epochs_logged": _epochs_logged(model_dir),
                             "exports": sorted(os.listdir(os.path.join(model_dir, "export")))}
    return record


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: one process, 2 replicas on 2 logical CPUs, the same global batch."""
    return made_once(tmp_path_factory, "single", _make_single_process)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """The uninterrupted 2-worker run."""
    return made_once(tmp_path_factory, "two_workers", _make_two_workers)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    return made_once(tmp_path_factory, "interrupted", _make_interrupted)


def test_two_workers_equal_one_process_and_only_the_chief_writes(single_process, two_workers):
    single_dir, single_out = single_process["dir"], single_process["out"]
    assert single_process["code"] == 0, single_out + single_process["err"]
    model_dir, outs = two_workers["dir"], two_workers["outs"]
    _assert_succeeded(outs)
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


def _assert_final_rerun(record, reference_dir):
    """The last rerun resumed where the SIGTERM left the run: every epoch logged once, one export,
    no temporary folder, the uninterrupted state."""
    model_dir, outs = record["dir"], record["final_outs"]
    _assert_succeeded(outs)
    epoch, step = record["sigterm"]["progress"]
    assert f"resumed from {os.path.join(model_dir, 'checkpoints')}" in outs[0][1], outs[0][1]
    assert f"({_where(epoch, step)}, step {epoch * STEPS + step})" in outs[0][1], outs[0][1]
    assert _epochs_logged(model_dir) == list(range(1, EPOCHS + 1))  # every epoch logged once
    assert os.listdir(os.path.join(model_dir, "export")) == ["1"]  # one export
    assert not [p for p in os.listdir(os.path.join(model_dir, "checkpoints")) if p.startswith(".tmp")]
    _assert_same_state(reference_dir, model_dir)


def test_kill_the_chief_the_other_exits_and_both_resume(interrupted, two_workers):
    """SIGKILL of the chief after the first checkpoint: the other worker stops promptly with a clear
    message; both commands again resume from that checkpoint; in the end (after the SIGTERM below and
    one more rerun): every epoch logged once, one export, the uninterrupted state."""
    kill = interrupted["kill"]
    assert kill["chief_was_running"], "the run ended before a worker could be killed"
    assert kill["other_code"] == 3, kill["other_out"] + kill["other_err"]
    assert "lost contact with another worker" in kill["other_err"], kill["other_err"]
    assert kill["waited"] < 60, f"the surviving worker took {kill['waited']:.0f} s to stop"
    assert kill["progress"] is not None and kill["progress"][1] == 0, kill["progress"]  # an epoch's end
    epoch = kill["progress"][0]
    assert epoch >= 1 and kill["epochs_logged"][:1] == [1]
    resumed_out = interrupted["sigterm"]["outs"][0][1]
    assert f"resumed from {os.path.join(interrupted['dir'], 'checkpoints')}" in resumed_out, resumed_out
    assert f"({_where(epoch, 0)}, step {epoch * STEPS})" in resumed_out, resumed_out
    _assert_final_rerun(interrupted, two_workers["dir"])


def test_sigterm_to_one_worker_saves_on_both_and_the_rerun_loses_nothing(interrupted, two_workers):
    """SIGTERM (a preemption) to the non-chief worker early in an epoch of the resumed run: both
    workers agree on the step, save there together and exit 143; both commands again finish from
    that step (the rest of that epoch, then the last one)."""
    term, resumed_epoch = interrupted["sigterm"], interrupted["kill"]["progress"][0]
    assert (term["after"] or "").startswith(f"epoch {resumed_epoch + 1}/{EPOCHS} "), term  # its 1st epoch
    for code, out, err in term["outs"]:
        assert code == 143, out + err
        assert "stopped on a termination signal: saved a checkpoint at epoch " in out, out
    chief_out, other_out = term["outs"][0][1], term["outs"][1][1]
    where = chief_out.split("saved a checkpoint at epoch ")[1].split(" in ")[0]
    assert where == other_out.split("saved a checkpoint at epoch ")[1].split(" in ")[0]  # the same step
    print(f"both workers saved at epoch {where}")
    epoch, step = term["progress"]
    assert where == _where(epoch, step)[len("epoch "):]
    assert (epoch, step) in {(resumed_epoch + 1, s) for s in range(1, STEPS)} | {(resumed_epoch + 2, 0)}, (epoch, step)
    assert term["epochs_logged"] == list(range(1, epoch + 1))
    _assert_final_rerun(interrupted, two_workers["dir"])


def test_rerun_of_the_finished_run_is_a_no_op_on_every_worker(interrupted):
    """Both commands of the finished run, again: every worker exits 0 at once, the chief says in one
    line that the run is complete and where its export is; no epoch is logged twice, no second export."""
    outs = interrupted["rerun_outs"]
    _assert_succeeded(outs)
    (_, chief_out, _), (_, other_out, _) = outs
    model_dir = interrupted["dir"]
    assert chief_out.strip().splitlines() == [
        f"nothing to do: {model_dir} has completed its {EPOCHS} epochs ({os.path.join(model_dir, 'checkpoints')}"
        f"/ckpt-{EPOCHS * STEPS}); results in {os.path.join(model_dir, 'results.json')}; export "
        f"{os.path.join(model_dir, 'export', '1')}"], chief_out
    assert other_out.strip().splitlines() == ["worker 1: pretraining done"], other_out
    assert interrupted["after_rerun"] == {"epochs_logged": list(range(1, EPOCHS + 1)), "exports": ["1"]}
