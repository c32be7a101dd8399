"""The registries: every name resolves to its implementation, and reading them needs no TensorFlow."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from mixmask_tf import registry


def test_every_registered_name_resolves():
    from mixmask_tf import augment, backbones, branches, models

    for name in registry.FRAMEWORKS:
        assert registry.resolve(registry.FRAMEWORKS, name) is models.FRAMEWORKS[name]
    for name in registry.BRANCHES:
        assert registry.resolve(registry.BRANCHES, name) is branches.BRANCHES[name]
    for name in registry.BACKBONES:
        assert callable(registry.resolve(registry.BACKBONES, name)) and name in backbones.BACKBONES
    for name in registry.AUGMENT_PRESETS:
        assert registry.resolve(registry.AUGMENT_PRESETS, name)(32, 3) == augment.preset_views(name, 32, 3)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown branch 'cutmix'; choose one of none, mixmask"):
        registry.resolve(registry.BRANCHES, "cutmix", "branch")


def test_reading_the_registries_imports_no_tensorflow():
    code = ("import sys, mixmask_tf, mixmask_tf.registry as r; "
            "print(sorted(r.FRAMEWORKS), 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("] ")[1].strip() == "False False"
