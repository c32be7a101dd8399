"""The README's `model.fit` example runs as written (in a fresh process, on the real dataset)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _example(marker):
    text = open(os.path.join(REPO_ROOT, "README.md")).read()
    match = re.search(re.escape(marker) + r".*?\n```python\n(.*?)```", text, re.S)
    assert match, f"README block after {marker!r} not found"
    return match.group(1)


def _run_example(marker):
    """Runs the README block after `marker` in a fresh process; asserts it exits 0; returns its stdout."""
    result = subprocess.run([sys.executable, "-c", _example(marker)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_readme_fit_example_runs():
    stdout = _run_example("<!-- example: fit")
    accuracy = float(re.search(r"kNN top-1: ([\d.]+)%", stdout).group(1))
    assert 10.0 < accuracy <= 100.0  # above chance (10 classes); accuracy itself is the demo's job
    for name in ("loss_clean", "loss_mix", "loss_switch", "lambda"):
        assert name in stdout


def test_readme_combinations_example_runs():
    stdout = _run_example("<!-- example: combinations")
    assert "('embedding_dim', 'hidden_dim', 'tau', 'tau_schedule', 'total_steps')" in stdout
    for name in ("loss_mix", "loss_switch", "loss_unmix", "loss_unmix_switch", "lambda_unmix"):
        assert name in stdout
    assert "framework 'simclr' does not take queue_size" in stdout


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist"),
                    reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_readme_mscn_example_runs():
    stdout = _run_example("<!-- example: mscn")
    assert "['loss', 'loss_clean', 'mask_ratio_key', 'mask_ratio_query']" in stdout
    assert "HighPassFilter(sigma=0.625, radius=2)" in stdout
