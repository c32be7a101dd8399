"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and quiet TensorFlow.

The logical device split must happen before TensorFlow initialises its devices, so it is
done here, at collection time, before any test module runs a TF op.
"""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # devices already initialised (e.g. a plugin imported TF first)
    pass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test of the process.

    TensorFlow keys its collective ops by group and instance numbers that each strategy object
    counts from the same start; a second strategy on the same devices in the same process reuses
    them, and its first all-reduce of another shape fails ("Shape mismatch in the collective
    instance 100"). One strategy per process keeps the keys unique.
    """
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should split the CPU into 2 logical devices"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


def assert_replicas_agree(variables, atol=1e-6):
    """Every replica's copy of each variable holds the same value (no silent drift)."""
    import numpy as np

    for var in variables:
        copies = var.value.values
        assert len(copies) == 2, f"{var.path} is not mirrored over 2 replicas"
        np.testing.assert_allclose(copies[0].numpy(), copies[1].numpy(), atol=atol, err_msg=var.path)


def run_pretrain(*args, timeout=300):
    """Runs `python -m trainers.pretrain *args` from the repo root; returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "trainers.pretrain", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_module(module, *args, timeout=300):
    """Runs `python -m <module> *args` from the repo root; returns the CompletedProcess."""
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_legacy_npz(model, folder, epoch):
    """A checkpoint of the format written before TensorFlow checkpoints (`ckpt-<epoch>.npz`),
    as the old `checkpoint.save` wrote it, for the tests of its resume path."""
    import json

    import numpy as np

    from mixmask_tf import checkpoint

    variables, names = checkpoint.state_variables(model)
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    arrays["__names__"] = np.array(json.dumps(names))
    arrays["__epoch__"] = np.array(int(epoch))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, checkpoint.LEGACY_PATTERN.format(epoch=epoch))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path
