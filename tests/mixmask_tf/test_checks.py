"""mixmask_tf.checks: the argument checks, TensorFlow-free, and the branches build on them (one implementation)."""

import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from mixmask_tf import branches, checks
from mixmask_tf import options as declared


def test_importing_checks_imports_no_tensorflow():
    out = subprocess.run([sys.executable, "-c", "import sys\nfrom mixmask_tf import checks, options\n"
                          "options.check('saliency', {'alpha': 2.0})\n"
                          "print(checks.is_tensor(1.0), 'tensorflow' in sys.modules, 'keras' in sys.modules)"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


@pytest.mark.parametrize("value, ok", [(0, True), (1, True), (0.5, True), (np.float32(0.25), True), (np.int64(1), True),
                                       (-0.01, False), (1.01, False), (True, False), ("0.5", False), (None, False),
                                       (math.nan, False)])
def test_probability(value, ok):
    if ok:
        assert checks.probability("p", value) == float(value)
        assert type(checks.probability("p", value)) is float
    else:
        with pytest.raises(ValueError, match=r"p must be a probability, a number in \[0, 1\]"):
            checks.probability("p", value)


def test_interval_bounds_and_message():
    assert checks.interval("r", 0.0, 0.0, 1.0, high_open=True) == 0.0
    for bad in (1.0, -1e-9, math.inf, math.nan, False):
        with pytest.raises(ValueError, match=r"r must lie in \[0, 1\)"):
            checks.interval("r", bad, 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"c \(a cap\) must lie in \(0, 1\], got 0"):
        checks.interval("c", 0, 0.0, 1.0, low_open=True, what="a cap")
    assert checks.interval("c", 1, 0.0, 1.0, low_open=True) == 1.0


def test_integer_positive_pair_choice():
    assert checks.integer("n", np.int32(3)) == 3 and type(checks.integer("n", np.int32(3))) is int
    assert checks.integer("n", 0, minimum=0) == 0
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            checks.integer("n", bad)
    assert checks.positive("s", 0.5) == 0.5
    for bad in (0, -1, math.inf, math.nan, True):
        with pytest.raises(ValueError, match="s must be a finite number > 0"):
            checks.positive("s", bad)
    assert checks.fraction_pair("q", [0.1, 0.1]) == (0.1, 0.1)
    for bad in ((0.5, 0.1), (0.1,), 0.3, (-0.1, 0.5), (0.1, 1.5), ("0.1", "0.2")):
        with pytest.raises(ValueError, match=r"q must be a pair"):
            checks.fraction_pair("q", bad)
    assert checks.choice("f", "blur", checks.SALIENCY_FILLS) == "blur"
    with pytest.raises(ValueError, match="f must be one of 'highpass', 'blur', 'mean', got 'sharpen'"):
        checks.choice("f", "sharpen", checks.SALIENCY_FILLS)


def test_is_tensor_only_for_tensors():
    import tensorflow as tf

    assert checks.is_tensor(tf.constant(1.0)) and checks.is_tensor(tf.Variable(1.0))
    assert not checks.is_tensor(np.float32(1.0)) and not checks.is_tensor(1.0)


# (branch, bad options, part of the message): each must fail identically in the constructor and in
# options.check (what the CLI runs before TensorFlow is imported).
BAD_OPTIONS = [
    ("mixmask", dict(grid_size=1), "grid_size must be an integer >= 2"),
    ("mixmask", dict(ratio=0.0), "ratio must be in the open interval"),
    ("mixmask", dict(ratio_range=(0.6, 0.2)), "ratio_range must satisfy"),
    ("mixmask", dict(mask_type="checkerboard"), "mask_type must be one of"),
    ("erase", dict(grid_size=2.0), "grid_size must be an integer"),
    ("unmix", dict(global_prob=1.5), "global_prob must be a number in [0, 1]"),
    ("mixmask_unmix", dict(beta=0.0), "beta must be a finite number > 0"),
    ("mscn", dict(ratio=1.0), "ratio must lie in [0, 1)"),
    ("mscn", dict(key_ratio=-0.1), "key_ratio must lie in [0, 1)"),
    ("mscn", dict(grid_size=0), "grid_size must be an integer >= 1"),
    ("mscn", dict(noise_std=0.0), "noise_std must be a finite number > 0"),
    ("mscn", dict(focal_size=0.0), "focal_size (a fraction of the shorter image side) must lie in (0, 1]"),
    ("mscn", dict(channel_prob=1.2), "channel_prob must be a probability"),
    ("mscn", dict(key_mask_prob=-0.5), "key_mask_prob must be a probability"),
    ("mscn", dict(extra_views=-1), "extra_views must be an integer >= 0"),
    ("mscn", dict(sigma=-2.0), "the high-pass sigma must be a positive number"),
    ("saliency", dict(fill="sharpen"), "fill must be one of"),
    ("saliency", dict(query_ratio=(0.5, 0.1)), "query_ratio must be a pair"),
    ("saliency", dict(negative_ratio=0.5), "negative_ratio must be a pair"),
    ("saliency", dict(focal_prob=1.5), "focal_prob must be a probability"),
    ("saliency", dict(negative_spatial_prob=-1), "negative_spatial_prob must be a probability"),
    ("saliency", dict(fg_cap=0.0), "fg_cap must lie in (0, 1]"),
    ("saliency", dict(std_factor=-0.1), "std_factor"),
    ("saliency", dict(alpha=0.0), "alpha (the hard negatives' penalty ratio) must be a finite number > 0"),
    ("saliency", dict(hard_negatives=1.5), "hard_negatives must be an integer >= 0"),
    ("saliency", dict(negative_noise_std=0), "negative_noise_std must be a finite number > 0"),
    ("saliency", dict(localisation="vgg"), "localisation must be"),
    ("saliency", dict(radius=0), "the high-pass kernel radius must be an integer >= 1"),
]


@pytest.mark.parametrize("name, options, message", BAD_OPTIONS,
                         ids=[f"{n}-{next(iter(o))}" for n, o, _ in BAD_OPTIONS])
def test_constructor_and_branch_options_fail_alike(name, options, message):
    with pytest.raises(ValueError) as built:
        branches.build_branch(name, **options)
    with pytest.raises(ValueError) as checked:
        declared.check(name, options)
    assert message in str(built.value)
    assert str(checked.value) == str(built.value)


@pytest.mark.parametrize("name", ["none", "mixmask", "unmix", "mixmask_unmix", "erase", "mscn", "saliency"])
def test_defaults_and_configs_pass(name):
    config = branches.build_branch(name).get_config()
    config.pop("name")
    declared.check(name, config)  # a built branch's own config is valid
    declared.check(name, {})      # and so are the defaults


def test_unknown_branch():
    with pytest.raises(ValueError, match="unknown branch 'cutmix'; known: none, mixmask"):
        declared.check("cutmix", {})


def test_saliency_only_checks_the_filter_for_the_highpass_fill():
    # The blur and mean fills do not filter: a filter option they ignore is not an error.
    assert branches.build_branch("saliency", fill="blur", radius=0).fill == "blur"
    with pytest.raises(ValueError, match="radius"):
        branches.build_branch("saliency", fill="highpass", radius=0)
