"""Each branch option is declared once (``mixmask_tf.options``): its flag and the constructor agree."""

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from mixmask_tf import branches, registry
from mixmask_tf import options as declared

# The pretraining command's flags as it defines them, read in a fresh interpreter: importing
# trainers.pretrain here would define its flags in this process, where another test module may
# already have defined a flag of the same name (the benchmarks' --grid_size, --width, ...).
_FLAGS_SCRIPT = r"""
import json
from absl import flags
import trainers.pretrain  # noqa: F401  (defines every flag)
from trainers.flag_groups import branch as branch_flags
print(json.dumps({"defaults": {name: flags.FLAGS[name].default for name in branch_flags.FLAG_OPTIONS},
                  "declared": {name: o.default for name, o in branch_flags.FLAG_OPTIONS.items()},
                  "data_options": list(branch_flags.DATA_OPTIONS)}))
"""


@pytest.fixture(scope="module")
def command_flags():
    done = subprocess.run([sys.executable, "-c", _FLAGS_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def constructor_defaults(name):
    """Keyword -> default of the branch's constructor (``**mask_options``: the ``MaskOptions`` fields)."""
    defaults = {}
    for param in inspect.signature(branches.branch_class(name).__init__).parameters.values():
        if param.kind is param.VAR_KEYWORD and param.name == "mask_options":
            defaults.update({f.name: f.default for f in dataclasses.fields(branches.MaskOptions)})
        elif param.name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            defaults[param.name] = param.default
    return defaults


@pytest.mark.parametrize("name", list(registry.BRANCHES))
def test_the_declarations_are_the_constructors_options(name):
    defaults = constructor_defaults(name)
    options = declared.declared(name)
    assert [option.name for option in options] == list(defaults)
    assert {option.name: option.default for option in options} == defaults


@pytest.mark.parametrize("name", list(registry.BRANCHES))
def test_flag_defaults_equal_constructor_defaults(name, command_flags):
    defaults = constructor_defaults(name)
    flagged = [option for option in declared.declared(name) if option.flag]
    for option in flagged:
        default = command_flags["defaults"][option.flag]
        if option.flag_kind() == "pair" and default is not None:
            default = [float(v) for v in default]
        assert default == _plain(defaults[option.name]), (name, option.flag)
        assert _plain(command_flags["declared"][option.flag]) == default
    # Every option has a flag except those the data gives and MixMask*'s permutation (--same_permutation).
    unflagged = {option.name for option in declared.declared(name)} - {option.name for option in flagged}
    assert unflagged <= set(command_flags["data_options"]) | ({"permutation"} if name == "mixmask_unmix" else set())
