"""The PyTorch interpreter of the import / export tests (tests/torch_side.py runs under it).

PyTorch lives in its own environment, `.torchvenv` (setup.sh installs tests/requirements-torch.txt
there), never in the TensorFlow one: the library does not need it, and the tests exchange files
(.pth, .safetensors, .npy) with it through a subprocess. `MIXMASK_TORCH_PYTHON` names another
interpreter. Without one the tests fail under CI=true and skip, saying why, elsewhere.
"""

import os
import subprocess

import pytest

from conftest import REPO_ROOT

TORCH_SIDE = os.path.join(REPO_ROOT, "tests", "torch_side.py")


def torch_python():
    """The PyTorch interpreter's path (fails in CI, skips elsewhere, when there is none)."""
    path = os.environ.get("MIXMASK_TORCH_PYTHON") or os.path.join(REPO_ROOT, ".torchvenv", "bin", "python")
    if os.path.exists(path):
        return path
    why = f"no PyTorch interpreter at {path}: run `bash setup.sh` (it makes .torchvenv) or set MIXMASK_TORCH_PYTHON"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def torch_side(*args, timeout=300):
    """Runs `tests/torch_side.py *args` with PyTorch; returns its stdout (fails the test on an error)."""
    result = subprocess.run([torch_python(), TORCH_SIDE, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
