"""A tf.data service on 127.0.0.1: a dispatcher and two workers started as separate processes with
`python -m trainers.data_service` (the commands of docs/distributed.md).

* every batch of an epoch is handed out exactly once (dynamic sharding over the batch numbers),
  and a service worker killed with SIGKILL mid-epoch loses only the batches it held: the stream
  goes on from the other worker, nothing is repeated;
* `trainers.pretrain --data_service=grpc://...` pretrains from the workers, and finishes its run
  when one of them is killed mid-epoch;
* the command's flag errors: one line, exit status 2.

Each process costs ~10 s of start-up here: one cluster (three processes) serves the module, plus
one extra worker and one pretraining run.
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
from mixmask_tf import data
from mixmask_tf.data import service

N, BATCH = 96, 8
STEPS = N // BATCH
EPOCHS = 3
ARGS = ["--dataset=synthetic", "--image_size=16", "--train_limit=1024", "--test_limit=64", "--width=8",
        "--batch_size=32", "--queue_size=128", f"--epochs={EPOCHS}", "--knn_every=1", "--random_init_knn=false",
        "--tensorboard=false", "--plots=false", "--augment=cifar", "--verbose=0"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "trainers.data_service", *args], cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ready(proc):
    """The process's first line ("data service ...: address"), printed once it serves."""
    line = proc.stdout.readline()
    assert line.startswith("data service"), (line, proc.poll(), proc.poll() is not None and proc.stderr.read())
    return line.strip()


def _start_worker(address):
    return _start("--role=worker", f"--dispatcher={address}", f"--port={_free_port()}", "--host=127.0.0.1")


@pytest.fixture(scope="module")
def cluster():
    port = _free_port()
    address = f"grpc://127.0.0.1:{port}"
    procs = [_start("--role=dispatcher", f"--port={port}")]
    procs += [_start_worker(address) for _ in range(2)]  # they wait for the dispatcher to come up
    try:
        lines = [_ready(proc) for proc in procs]
        assert lines[0] == f"data service dispatcher: grpc://localhost:{port}"
        assert all(line.endswith(f"dispatcher {address}") for line in lines[1:])
        yield {"address": address, "procs": procs}
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_each_batch_once_per_epoch_and_a_killed_worker_loses_only_its_own(cluster):
    images = np.zeros([N, 4, 4, 1], np.uint8)
    source = data.ArraySource(images, np.arange(N))  # an example's label is its index
    view_fn = lambda image, seed: tf.cast(tf.stack([image, image]), tf.float32)  # noqa: E731

    args = dict(batch_size=BATCH, view_fn=view_fn, seed=5, start_epoch=0, with_labels=True)
    local = list(data.make_pretrain_dataset(source, **args).take(50 * STEPS).as_numpy_iterator())
    number = {tuple(labels): g for g, (_, labels) in enumerate(local)}
    served = service.distribute(data.make_pretrain_dataset(source, split_batches=True, **args), cluster["address"])
    got, killed_after = [], None
    for _, labels in served.take(40 * STEPS).as_numpy_iterator():
        g = number.get(tuple(labels))
        assert g is not None, f"a batch not among the first {50 * STEPS} batches: labels {labels}, after {got}"
        got.append(g)
        time.sleep(0.01)  # a trainer's step: the workers run ahead and hold batches
        if killed_after is None and set(range(2 * STEPS)) <= set(got):
            # Epochs 0 and 1 are complete: kill a worker in the middle of epoch 2.
            cluster["procs"][2].send_signal(signal.SIGKILL)
            killed_after = len(got)
        if killed_after is not None and len(got) == killed_after + 3 * STEPS:
            break
    assert killed_after is not None, got
    assert len(got) == len(set(got)) == killed_after + 3 * STEPS  # no batch twice, and the stream went on
    for e in range(2):
        assert sorted(np.concatenate([local[g][1] for g in range(e * STEPS, (e + 1) * STEPS)]).tolist()) == \
            list(range(N))  # every example once in each epoch
    lost = sorted(set(range(max(got))) - set(got))
    rank = {g: i for i, g in enumerate(sorted(got))}
    moved = max(abs(i - rank[g]) for i, g in enumerate(got))
    print(f"killed a worker after {killed_after} batches; lost batch numbers {lost}; largest move in the arrival "
          f"order {moved} places; arrival order {got}")
    assert len(lost) < STEPS  # what the killed worker held, not the rest of its share
    assert all(g >= 2 * STEPS for g in lost)  # nothing from before the kill


@pytest.mark.slow
def test_pretrain_from_the_service_survives_a_killed_worker(cluster, tmp_path):
    spare = _start_worker(cluster["address"])  # two live workers again (the other test killed one)
    _ready(spare)
    model_dir = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-m", "trainers.pretrain", *ARGS, f"--data_service={cluster['address']}",
                             f"--model_dir={model_dir}"], cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        head, killed = [], False
        for line in proc.stdout:
            head.append(line)
            if line.startswith("epoch 1/"):
                time.sleep(0.1)  # past epoch 1's checkpoint, into epoch 2 (32 steps, ~0.5 s here)
                spare.send_signal(signal.SIGKILL)
                killed = True
            elif killed and line.startswith("epoch "):
                head.insert(-1, "(a worker was killed here)\n")
                assert line.startswith("epoch 2/"), head  # so it was killed during epoch 2
                break
        out, err = proc.communicate(timeout=400)
    finally:
        for p in (proc, spare):
            p.kill()
            p.communicate()
    out = "".join(head) + out
    print(out)
    assert "(a worker was killed here)" in out
    assert proc.returncode == 0, out + err[-3000:]
    assert f"input: the tf.data service at {cluster['address']}" in out
    epochs = [json.loads(line)["epoch"] for line in open(os.path.join(model_dir, "metrics.jsonl"))]
    assert epochs == list(range(1, EPOCHS + 1))
    results = json.load(open(os.path.join(model_dir, "results.json")))
    assert results["epochs_completed"] == EPOCHS and np.isfinite(results["knn_top1"])


def test_command_flag_errors():
    for args, message in [([], "--role=dispatcher or --role=worker is required"),
                          (["--role=worker"], "--role=worker needs --dispatcher=grpc://host:port"),
                          (["--role=worker", "--dispatcher=localhost:5"], "--dispatcher must be a tf.data service"),
                          (["--role=dispatcher", "--dispatcher=grpc://h:5"], "are worker flags"),
                          (["--role=dispatcher", "--port=70000"], "--port must lie in")]:
        done = subprocess.run([sys.executable, "-m", "trainers.data_service", *args], cwd=REPO_ROOT, env=_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            next(line for line in done.stderr.splitlines() if message in line)], (args, done.stderr)
