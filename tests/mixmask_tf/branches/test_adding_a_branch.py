"""docs/adding-a-branch.md: its worked example, run as the page writes it, trains with every framework.

The page's Python blocks are, in order: the branch file, its registry line, its option declaration
and a usage snippet. They are registered here as the page says (the registry line in
``registry.BRANCHES``, the declaration in ``options.BRANCH_OPTIONS``), for the test only.
"""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from mixmask_tf import backbones, branches, registry
from mixmask_tf import options as declared
from mixmask_tf.models import build_trainer

DOC = os.path.join(REPO_ROOT, "docs", "adding-a-branch.md")
# The page's blocks, in order: example: flip-branch, example: flip-registry, example: flip-option,
# example: flip-usage (tests/test_readme.py checks that each names this file).
SHAPE = (16, 16, 1)
# Small heads and queue: MoCo's queue, the other frameworks' hidden width.
SMALL = {name: dict(embedding_dim=8, **({"queue_size": 32} if name.startswith("moco") else {"hidden_dim": 16}))
         for name in registry.FRAMEWORKS}

# Registers the page's branch from its blocks (`blocks`), as adding it to the repository would: its
# registry line and option declaration (no TensorFlow), and its file as module mixmask_tf.branches.flip.
REGISTER = '''
import ast, sys
from mixmask_tf import options as declared, registry
registry.BRANCHES.update(ast.literal_eval("{" + blocks[1].strip().rstrip(",") + "}"))
exec(blocks[2], vars(declared))
'''
ADD_FILE = '''
import types
module = types.ModuleType("mixmask_tf.branches.flip")
exec(compile(blocks[0], "docs/adding-a-branch.md", "exec"), module.__dict__)
sys.modules["mixmask_tf.branches.flip"] = module
'''


def _blocks():
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.fixture(scope="module")
def flip():
    """The page's branch registered (undone afterwards)."""
    saved = dict(registry.BRANCHES), dict(declared.BRANCH_OPTIONS)
    exec(REGISTER + ADD_FILE, {"blocks": _blocks()})
    yield _blocks()
    registry.BRANCHES.clear()
    registry.BRANCHES.update(saved[0])
    declared.BRANCH_OPTIONS.clear()
    declared.BRANCH_OPTIONS.update(saved[1])
    vars(declared).pop("FLIP", None)
    sys.modules.pop("mixmask_tf.branches.flip", None)


def test_the_page_has_the_four_blocks():
    blocks = _blocks()
    assert len(blocks) == 4 and "class FlipBranch(Branch)" in blocks[0] and '"flip":' in blocks[1]


@pytest.mark.parametrize("framework", list(registry.FRAMEWORKS))
def test_the_example_branch_trains_with_every_framework(flip, framework):
    keras.utils.set_random_seed(0)
    branch = branches.build_branch("flip", weight=0.3)
    assert branches.build_branch(**branch.get_config()).get_config() == branch.get_config() == {"name": "flip",
                                                                                               "weight": 0.3}
    model = build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=branch, seed=1,
                          **SMALL[framework])
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    data = np.random.default_rng(0).normal(size=(16, 2) + SHAPE).astype(np.float32)
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), verbose=0).history
    assert sorted(history) == ["loss", "loss_clean", "loss_flip"]
    assert all(np.isfinite(v[-1]) for v in history.values())
    # The term is the framework's per-sample loss of the flipped query, weighted 0.3.
    x1, x2 = (tf.constant(data[:8, v]) for v in (0, 1))
    result, _, _ = model.compute_losses(x1, x2, training=False)
    _, targets, _, _ = model.views_forward((x1, x2), training=False)
    query = model.embed_query(tf.image.flip_left_right(x1), training=False)
    expected = 0.3 * tf.reduce_mean(model.branch_per_sample_loss(query, targets))
    np.testing.assert_allclose(float(result["loss_flip"]), float(expected), rtol=1e-5)


def test_the_option_is_declared_once(flip):
    (option,) = declared.declared("flip")
    assert option.default == 0.5 and option.flag == "flip_weight"
    with pytest.raises(ValueError, match="weight must be a finite number > 0") as built:
        branches.build_branch("flip", weight=0.0)
    with pytest.raises(ValueError) as checked:
        declared.check("flip", {"weight": 0.0})
    assert str(checked.value) == str(built.value)


def test_the_usage_snippet_runs(flip):
    namespace = {}
    exec(flip[3], namespace)
    assert namespace["trainer"].branch.weight == 0.3


def test_the_flag_is_generated_and_checked_before_tensorflow():
    code = (f"blocks = {_blocks()!r}\n" + REGISTER +
            "from absl import flags\n"
            "import trainers.pretrain as pretrain\n"
            "from trainers.flag_groups import UserError, branch\n"
            "flags.FLAGS(['pretrain', '--flagfile=configs/smoke.cfg', '--model_dir=/nonexistent/m', '--branch=flip',\n"
            "             '--flip_weight=0.3'])\n"
            "pretrain.validate_flags()\n"
            "assert branch.option_values() == {'weight': 0.3}\n"
            "flags.FLAGS.flip_weight = 0.0\n"
            "try:\n"
            "    pretrain.validate_flags()\n"
            "except UserError as e:\n"
            "    print(e)\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.stdout.splitlines() == ["--flip_weight: weight must be a finite number > 0, got 0.0.", "False"], \
        out.stderr[-2000:]
