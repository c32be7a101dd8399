"""Each branch option is declared once (``mixmask_tf.options``): its flag and the constructor agree."""

import dataclasses
import inspect

import pytest
from absl import flags

import trainers.pretrain  # noqa: F401  (defines every flag)
from mixmask_tf import branches, registry
from mixmask_tf import options as declared
from trainers.flag_groups import branch as branch_flags


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
def test_flag_defaults_equal_constructor_defaults(name):
    defaults = constructor_defaults(name)
    flagged = [option for option in declared.declared(name) if option.flag]
    for option in flagged:
        default = flags.FLAGS[option.flag].default
        if option.flag_kind() == "pair" and default is not None:
            default = tuple(float(v) for v in default)
        assert default == defaults[option.name], (name, option.flag)
        assert branch_flags.FLAG_OPTIONS[option.flag].default == default
    # Every option has a flag except those the data gives and MixMask*'s permutation (--same_permutation).
    unflagged = {option.name for option in declared.declared(name)} - {option.name for option in flagged}
    assert unflagged <= set(branch_flags.DATA_OPTIONS) | ({"permutation"} if name == "mixmask_unmix" else set())
