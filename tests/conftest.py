"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and quiet TensorFlow.

The logical device split must happen before TensorFlow initialises its devices, so it is
done here, at collection time, before any test module runs a TF op.
"""

import fcntl
import json
import os
import shutil
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


def made_once(tmp_path_factory, name, make):
    """make(folder) -> a JSON-able record of a run; made once per test session, xdist workers included.

    Under pytest-xdist the first worker that asks makes it in the session's shared temporary folder
    while the others wait on a file lock, then read its record; an error while making it is recorded
    and fails every test that asks."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make(str(tmp_path_factory.mktemp(name)))
    root = tmp_path_factory.getbasetemp().parent / "shared_runs"  # shared by the session's workers
    root.mkdir(exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here while this run is made
        record_path = root / f"{name}.json"
        if not record_path.exists():
            model_dir = root / name
            shutil.rmtree(model_dir, ignore_errors=True)  # a crashed worker's attempt
            model_dir.mkdir()
            try:
                record = make(str(model_dir))
            except Exception as e:  # noqa: BLE001 (the record says why, for whichever worker reads it)
                import traceback

                record = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-5000:]}"}
            record_path.write_text(json.dumps(record))
        record = json.loads(record_path.read_text())
    if "error" in record:
        pytest.fail(f"making the {name} run failed: {record['error']}")
    return record


# Runs the pretrain command's `main` once per argv in ONE interpreter (absl's FLAGS are reparsed
# and reset between cases), capturing what each case prints and its exit status. Only for commands
# that stop with an error before training: TensorFlow is imported once instead of once per case.
_PRETRAIN_CASES_SCRIPT = r"""
import contextlib, io, json, sys, traceback
sys.argv = ["pretrain"]
from absl import flags
import trainers.pretrain as pretrain
FLAGS = flags.FLAGS
results = []
for argv in json.loads(sys.stdin.read()):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            FLAGS(["pretrain", *argv])
            pretrain.main(["pretrain"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except flags.Error as e:  # what absl's app.run prints for a flag it cannot parse
            print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
            code = 1
        except BaseException:  # an uncaught error: its traceback, as the command would print it
            traceback.print_exc()
            code = 1
        finally:
            FLAGS.unparse_flags()
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print("CASES_JSON " + json.dumps(results))
"""


def run_pretrain_cases(cases, timeout=300):
    """`python -m trainers.pretrain <argv>` for each argv of `cases` that stops before training, in one
    interpreter; returns a list of SimpleNamespace(returncode, stdout, stderr), one per case.

    Each case goes through the command's own `main` (its one-line errors and exit status 2); flag
    parsing errors are reported as absl's `app.run` reports them (exit status 1). A case that does
    not stop trains in-process, slowly, and fails its test on the exit status.
    """
    import json
    import subprocess
    import types

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", _PRETRAIN_CASES_SCRIPT], cwd=REPO_ROOT, env=env,
                          input=json.dumps([list(c) for c in cases]), capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("CASES_JSON ")]
    assert done.returncode == 0 and lines, f"the cases driver failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return [types.SimpleNamespace(**r) for r in json.loads(lines[-1][len("CASES_JSON "):])]


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


def int_seed(a, b=0):
    """A stateless seed, int32 [2]: ``[a, b]``."""
    return tf.constant([a, b], tf.int32)


def assert_xla_equal(fn, seed):
    """``fn(seed)`` gives the same bits under ``tf.function(jit_compile=True)`` as eagerly."""
    import numpy as np

    np.testing.assert_array_equal(tf.function(fn, jit_compile=True)(seed).numpy(), fn(seed).numpy())
