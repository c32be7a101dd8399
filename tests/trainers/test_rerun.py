"""Rerunning the pretraining command: what a scheduler does when it restarts a job.

* a finished run, rerun, is a no-op that says so in one line (exit 0, no epoch logged twice, no
  second export); a run whose results.json or export is missing completes exactly that;
* a larger --epochs continues from the last checkpoint; a smaller one, or a flag that fixes what
  the checkpoints hold (framework, branch, backbone, width, image size, ...), is refused in one
  line before anything is written;
* a full disk (a 900 KiB tmpfs): one line naming what could not be written and what is intact,
  exit 74; the same command, once there is space, finishes the run;
* one run interrupted many times at random moments (SIGKILL and SIGTERM, in start-up, training,
  the kNN monitor, checkpointing and export), rerun each time until it exits 0, ends in the state
  of an uninterrupted run: the same weights, every epoch logged once with the same losses, one
  export.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, made_once, run_pretrain, run_pretrain_cases
from mixmask_tf import checkpoint

# 3 epochs: the finished run below is also the uninterrupted reference of the random-interruptions test.
EPOCHS, STEPS = 3, 8
ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=256", "--test_limit=64", "--width=8",
        "--batch_size=32", "--queue_size=128", "--knn_every=1", "--random_init_knn=false", "--tensorboard=false",
        "--plots=false", "--augment=cifar", "--verbose=0"]


def _pretrain(model_dir, *extra, epochs=EPOCHS):
    return run_pretrain(*ARGS, f"--epochs={epochs}", f"--model_dir={model_dir}", *extra)


def _make_finished(model_dir):
    done = _pretrain(model_dir)
    return {"dir": model_dir, "code": done.returncode, "out": done.stdout, "err": done.stderr[-3000:]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (shared, read-only): tests copy it before changing it; the random-interruptions
    test compares its interrupted run with it."""
    record = made_once(tmp_path_factory, "rerun_finished", _make_finished)
    assert record["code"] == 0, record["out"] + record["err"]
    return record["dir"]


def _copy(src, tmp_path):
    dst = str(tmp_path / "run")
    shutil.copytree(src, dst)
    return dst


def _epochs_logged(model_dir):
    return [json.loads(line)["epoch"] for line in open(os.path.join(model_dir, "metrics.jsonl"))]


def _snapshot(model_dir):
    """{relative path: (size, mtime_ns)} of every file in the folder."""
    found = {}
    for root, _, files in os.walk(model_dir):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            found[os.path.relpath(path, model_dir)] = (st.st_size, st.st_mtime_ns)
    return found


def _latest_state(model_dir):
    paths = checkpoint.list_checkpoints(os.path.join(model_dir, "checkpoints"))
    return checkpoint.read_checkpoint(paths[-1])


def _assert_same_state(a_dir, b_dir):
    names_a, a, epoch_a, step_a = _latest_state(a_dir)
    names_b, b, epoch_b, step_b = _latest_state(b_dir)
    assert (epoch_a, step_a) == (epoch_b, step_b)
    assert names_a == names_b
    for name, x, y in zip(names_a, a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=name)


def test_rerun_of_a_finished_run_is_a_one_line_no_op(finished, tmp_path):
    model_dir = _copy(finished, tmp_path)
    before = _snapshot(model_dir)
    done = _pretrain(model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"nothing to do: {model_dir} has completed its {EPOCHS} epochs"), lines[0]
    assert f"export {os.path.join(model_dir, 'export', '1')}" in lines[0]
    assert _snapshot(model_dir) == before  # nothing written, nothing logged twice, no second export


def test_rerun_completes_a_missing_export_or_results(finished, tmp_path):
    model_dir = _copy(finished, tmp_path)
    results = json.load(open(os.path.join(model_dir, "results.json")))
    # Killed during the export: results.json written, no export version yet.
    shutil.rmtree(os.path.join(model_dir, "export"))
    done = _pretrain(model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"exported SavedModel to {os.path.join(model_dir, 'export', '1')}" in done.stdout
    assert "pretraining mocov2" not in done.stdout and _epochs_logged(model_dir) == list(range(1, EPOCHS + 1))
    card = json.load(open(os.path.join(model_dir, "export", "1", "assets.extra", "export.json")))
    assert card["steps"] == EPOCHS * STEPS and card["epochs"] == EPOCHS
    # Killed after the export was moved into place but before results.json recorded it, and
    # results.json lost too: the kNN is measured again (the same value), the export found, not redone.
    os.remove(os.path.join(model_dir, "results.json"))
    done = _pretrain(model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"export of this state already in {os.path.join(model_dir, 'export', '1')}" in done.stdout
    assert os.listdir(os.path.join(model_dir, "export")) == ["1"]
    again = json.load(open(os.path.join(model_dir, "results.json")))
    assert again["knn_top1"] == results["knn_top1"] and again["steps_completed"] == EPOCHS * STEPS
    assert again["export"]["version"] == 1
    assert _pretrain(model_dir).stdout.startswith("nothing to do:")


def test_more_epochs_continue_and_changed_flags_are_refused_before_writing(finished, tmp_path):
    model_dir = _copy(finished, tmp_path)
    before = _snapshot(model_dir)
    refused = run_pretrain_cases([[*ARGS, f"--model_dir={model_dir}", f"--epochs={EPOCHS}", flag] for flag in (
        "--framework=simclr", "--branch=erase", "--backbone=resnet18_cifar", "--width=16", "--image_size=24",
        "--embedding_dim=64", "--queue_size=256")] + [[*ARGS, f"--model_dir={model_dir}", "--epochs=1"]])
    for case, flag in zip(refused[:-1], ("framework", "branch", "backbone", "width", "image_size", "embedding_dim",
                                         "queue_size")):
        assert case.returncode == 2, case.stdout + case.stderr
        assert case.stderr.startswith(f"pretrain: error: {model_dir} holds a run with --{flag}="), case.stderr
        assert len(case.stderr.strip().splitlines()) == 1, case.stderr
    assert refused[-1].returncode == 2
    assert f"has trained {EPOCHS} epochs" in refused[-1].stderr and "more than --epochs=1" in refused[-1].stderr
    assert _snapshot(model_dir) == before  # refused before anything was written
    done = _pretrain(model_dir, epochs=EPOCHS + 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from {os.path.join(model_dir, 'checkpoints')}" in done.stdout
    assert f"epochs {EPOCHS + 1}..{EPOCHS + 1}" in done.stdout
    assert _epochs_logged(model_dir) == list(range(1, EPOCHS + 2))
    assert sorted(os.listdir(os.path.join(model_dir, "export"))) == ["1", "2"]  # the longer run's export
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert results["epochs_completed"] == EPOCHS + 1 and results["export"]["version"] == 2


def _mount_tmpfs(folder, size):
    os.makedirs(folder, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], capture_output=True,
                          text=True)


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_rerun_finishes(tmp_path):
    folder = str(tmp_path / "small_disk")
    mounted = _mount_tmpfs(folder, "900k")
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        model_dir = os.path.join(folder, "run")
        # 3 epochs of this config need ~1.5 MB (two 300 KB checkpoints, backbone.keras, the export).
        args = ["--dataset=fashion_mnist", "--train_limit=512", "--test_limit=128", "--width=8",
                "--batch_size=128", "--queue_size=512", "--knn_every=1", "--random_init_knn=false",
                "--tensorboard=false", "--plots=false", "--augment=fashion_mnist", "--verbose=0", "--epochs=3",
                f"--model_dir={model_dir}"]
        done = run_pretrain(*args)
        assert done.returncode == 74, done.stdout + done.stderr
        message = done.stderr.strip().splitlines()[-1]
        assert message.startswith("pretrain: error: could not write "), done.stderr
        assert "No space left on device" in message and "Intact: the checkpoint " in message, message
        assert "Traceback" not in done.stderr
        subprocess.run(["mount", "-o", "remount,size=8m", folder], check=True)
        done = run_pretrain(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert _epochs_logged(model_dir) == [1, 2, 3]
        assert os.listdir(os.path.join(model_dir, "export")) == ["1"]
        assert run_pretrain(*args).stdout.startswith("nothing to do:")
    finally:
        subprocess.run(["umount", "-l", folder], capture_output=True)


def _phase(out, epochs):
    """Where a run was when it was stopped, from the last line it had printed."""
    lines = [line for line in out.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not last or last.startswith(("data:", "strategy:", "kNN monitor off", "random init", "steps per")):
        return "start-up"
    if last.startswith(("pretraining ", "resumed")):
        return "first epoch"
    if last.startswith(f"epoch {epochs}/"):
        return "final kNN and results"
    if last.startswith("epoch "):
        return "training, kNN monitor, checkpoint"
    if last.startswith(("kNN top-1", "results of", "pretraining done")):
        return "export"
    return "after the export"


def interrupt_until_done(args, epochs, interruptions, seed, max_delay=2.0, timeout=300):
    """Starts `python -m trainers.pretrain *args --epochs=<epochs>` and stops it with SIGKILL or SIGTERM, `interruptions` times, then runs it
    to its end. Each stop comes a random delay in [0, max_delay) s after a random one of the lines the
    command prints (0: from the start), so that start-up, every epoch, the kNN monitor, checkpoint
    writing and the export are all hit whatever the machine's speed. Returns [(signal or None,
    lines seen, delay, exit status, phase)] of every attempt."""
    import threading

    rng = random.Random(seed)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "trainers.pretrain", *args, f"--epochs={epochs}"]
    attempts = []
    for attempt in range(interruptions + 1):
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        lines, seen, ended = [], threading.Condition(), []

        def read(proc=proc, lines=lines, seen=seen, ended=ended):
            for line in proc.stdout:
                with seen:
                    lines.append(line)
                    seen.notify_all()
            with seen:
                ended.append(True)  # its output closed: it is ending
                seen.notify_all()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        sig = after = delay = None
        if attempt < interruptions:
            after, delay = rng.randint(0, 2 + epochs + 2), rng.uniform(0.0, max_delay)
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            with seen:
                seen.wait_for(lambda: len(lines) >= after or ended, timeout=timeout)
            try:
                proc.wait(timeout=delay)
                sig = None  # it ended first
            except subprocess.TimeoutExpired:
                with seen:
                    printed = "".join(lines)
                proc.send_signal(sig)
        code = proc.wait(timeout=timeout)
        reader.join(timeout=10)
        attempts.append((sig.name if sig else None, after, delay, code, _phase(printed, epochs) if sig else "to the end"))
    return attempts


def _rows(model_dir):
    return [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]


@pytest.mark.slow
def test_random_interruptions_lose_nothing(tmp_path, finished):
    reference = finished  # the uninterrupted run of the same command (ARGS, EPOCHS), shared read-only
    model_dir = str(tmp_path / "interrupted" / "run")
    os.makedirs(os.path.dirname(model_dir))
    attempts = interrupt_until_done([*ARGS, f"--model_dir={model_dir}"], EPOCHS, interruptions=6, seed=7)
    print("\n".join(map(str, attempts)))
    assert attempts[-1][3] == 0, attempts
    for sig, _, _, code, _ in attempts[:-1]:
        assert code in ((-9,) if sig == "SIGKILL" else (-15, 143, 0)) or sig is None, attempts
    assert any(a[0] for a in attempts), "no attempt was interrupted"
    _assert_same_state(reference, model_dir)
    assert [r["epoch"] for r in _rows(model_dir)] == list(range(1, EPOCHS + 1))  # every epoch once
    for got, want in zip(_rows(model_dir), _rows(reference)):
        # An epoch finished after a mid-epoch resume logs the means of its last steps only.
        keys = ("knn_top1", "learning_rate") if "resumed_at_step" in got else (
            "loss", "loss_clean", "loss_mix", "loss_switch", "lambda", "knn_top1", "learning_rate")
        for key in keys:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=f"epoch {want['epoch']} {key}")
    assert os.listdir(os.path.join(model_dir, "export")) == ["1"]  # one export
    results, want = (json.load(open(os.path.join(d, "results.json"))) for d in (model_dir, reference))
    assert results["knn_top1"] == want["knn_top1"] and results["steps_completed"] == want["steps_completed"]
