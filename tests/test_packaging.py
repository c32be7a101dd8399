"""The installable package: one top-level package (mixmask_tf), the tools as console scripts.

Builds the wheel offline (``pip wheel --no-deps --no-build-isolation``, setuptools from
requirements.txt) and reads what it would install.
"""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

from conftest import REPO_ROOT

SCRIPTS = {"mixmask-pretrain": "mixmask_tf.trainers.pretrain:entry_point",
           "mixmask-knn-eval": "mixmask_tf.trainers.knn_eval:entry_point",
           "mixmask-linear-eval": "mixmask_tf.trainers.linear_eval:entry_point",
           "mixmask-finetune": "mixmask_tf.trainers.finetune:entry_point",
           "mixmask-export": "mixmask_tf.export.saved_model:entry_point",
           "mixmask-tflite": "mixmask_tf.export.tflite:entry_point",
           "mixmask-import-checkpoint": "mixmask_tf.trainers.import_checkpoint:entry_point",
           "mixmask-export-safetensors": "mixmask_tf.export.torch_weights:entry_point",
           "mixmask-data-service": "mixmask_tf.trainers.data_service:entry_point"}
# Where each installed package's code lives in the checkout.
ROOTS = {"mixmask_tf": "mixmask_tf", "mixmask_tf.trainers": "trainers", "mixmask_tf.export": "export"}


def _pyproject():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _folders():
    """Installed name of every package folder (a folder with __init__.py) of the checkout."""
    names = set()
    for installed, folder in ROOTS.items():
        for path, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            if "__init__.py" in files:
                rel = os.path.relpath(path, os.path.join(REPO_ROOT, folder))
                names.add(installed if rel == "." else installed + "." + rel.replace(os.sep, "."))
    return names


def test_every_package_folder_is_listed_and_mapped():
    config = _pyproject()
    packages = set(config["tool"]["setuptools"]["packages"])
    assert packages == _folders()
    mapping = config["tool"]["setuptools"]["package-dir"]
    for name in packages:
        root = next(r for r in sorted(ROOTS, key=len, reverse=True) if name == r or name.startswith(r + "."))
        if root != "mixmask_tf":
            expected = os.path.join(ROOTS[root], *name[len(root) + 1:].split(".")) if name != root else ROOTS[root]
            assert mapping[name] == expected.replace(os.sep, "/")
    assert config["project"]["scripts"] == SCRIPTS
    # The package's own dependencies are ranges, not pins (requirements.txt pins).
    assert not any("==" in d for d in config["project"]["dependencies"])


def test_the_wheel_installs_only_mixmask_tf_and_the_console_scripts(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info/ beside the sources.
    source = tmp_path / "source"
    for folder in ROOTS.values():
        shutil.copytree(os.path.join(REPO_ROOT, folder), source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, text=True,
                   env={**os.environ, "PIP_NO_INDEX": "1"})
    (wheel,) = [name for name in os.listdir(tmp_path) if name.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {name.split("/")[0] for name in names} == {"mixmask_tf", "mixmask_tf-0.1.0.dist-info"}
    for module in ("mixmask_tf/trainers/pretrain.py", "mixmask_tf/trainers/flag_groups/branch.py",
                   "mixmask_tf/export/saved_model.py", "mixmask_tf/augment/ops.py", "mixmask_tf/data/sources.py",
                   "mixmask_tf/branches/mixmask.py", "mixmask_tf/registry.py"):
        assert module in names
    assert not any(n.startswith(("trainers/", "export/", "tests/", "benchmarks/")) for n in names)
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in entry_points
    # Installed names: the tools reach export under either name.
    out = subprocess.run([sys.executable, "-c", "import trainers; print(trainers.export_module('saved_model').__name__)"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.stdout.strip() == "export.saved_model"
