"""The branch contract: mask options validated once, options read from signatures, the registry."""

import pytest

from mixmask_tf import branches, registry


def test_mask_options_are_validated_once_when_built():
    options = branches.MaskOptions(grid_size=8, ratio=0.25, ratio_range=[0.1, 0.6], per_sample=1)
    assert options.as_dict() == dict(grid_size=8, mask_type="blocked", ratio=0.25, ratio_range=(0.1, 0.6),
                                     per_sample=True, min_block_cells=None)
    for bad, match in [(dict(grid_size=1), "grid_size"), (dict(ratio=1.0), "ratio"),
                       (dict(mask_type="grid"), "mask_type"), (dict(ratio_range=(0.5, 0.2)), "ratio_range")]:
        with pytest.raises(ValueError, match=match):
            branches.MaskOptions(**bad)
    with pytest.raises(ValueError, match="grid size 8 is larger than the 4x4 image"):
        options.validate((4, 4, 3))
    options.validate((8, 8, 3))


def test_masked_branches_share_one_mask_value():
    for name in ("mixmask", "mixmask_unmix", "erase"):
        branch = branches.build_branch(name, grid_size=2, ratio=0.25)
        assert branch.mask == branches.MaskOptions(grid_size=2, ratio=0.25)
        assert {k: branch.get_config()[k] for k in branches.MASK_OPTIONS} == branch.mask.as_dict()


def test_branch_options_come_from_the_signatures():
    mask = branches.MASK_OPTIONS
    assert branches.branch_options("none") == ()
    assert set(branches.branch_options("mixmask")) == {"permutation", "switch", *mask}
    assert set(branches.branch_options("unmix")) == {"global_prob", "beta", "permutation"}
    assert set(branches.branch_options("mixmask_unmix")) == {"permutation", "switch", "global_prob", "beta",
                                                             "same_permutation", *mask}
    assert set(branches.branch_options("erase")) == {"fill", *mask}
    # Every option of get_config() (but the name) is an option build_branch takes, and round-trips.
    for name in registry.BRANCHES:
        config = branches.build_branch(name).get_config()
        assert set(config) - {"name"} <= set(branches.branch_options(name))
        assert branches.build_branch(**config).get_config() == config


def test_unknown_option_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"branch 'erase' takes no option 'beta'; its options are: fill, grid_size"):
        branches.build_branch("erase", beta=2.0)
    with pytest.raises(ValueError, match=r"branch 'none' takes no option 'grid_size'; its options are: \(none\)"):
        branches.build_branch("none", grid_size=4)
    with pytest.raises(ValueError, match="unknown branch 'cutmix'; choose one of none, mixmask, unmix"):
        branches.build_branch("cutmix")


def test_mask_options_are_frozen_and_calls_check_only_the_image_size(monkeypatch):
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from mixmask_tf.ops import masks

    branch = branches.EraseBranch(grid_size=4, mask_type="discrete", ratio=0.25, ratio_range=(0.1, 0.4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        branch.mask.ratio = 2.0
    calls = []
    real = masks.validate_mask_args
    monkeypatch.setattr(masks, "validate_mask_args", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    branch(tf.constant(np.zeros((2, 8, 8, 1), np.float32)), tf.constant([1, 2]))
    # The static fields were validated when the branch was built: a call checks the image size only.
    assert calls == [((4,), {"image_size": (8, 8)})]
    with pytest.raises(ValueError, match="grid size 4 is larger than the 2x2 image"):
        branch(tf.zeros([2, 2, 2, 1]), tf.constant([1, 2]))


def test_validate_is_as_strict_as_before_the_split():
    # MixMask reads (H, W) from the first two entries (as masks.validate_mask_args' image_size).
    mixmask = branches.MixMaskBranch(grid_size=4)
    mixmask.validate((16, 16))
    mixmask.validate((16, 16, 3))
    with pytest.raises(ValueError, match="image_size must be a pair of positive integers"):
        mixmask.validate((None, None, 3))
    with pytest.raises(ValueError, match="grid size 4 is larger than the 2x16 image"):
        mixmask.validate((2, 16, 3))
    # MixMask* builds (and so validates) its MixMask part first, as before.
    with pytest.raises(ValueError, match="grid_size"):
        branches.MixMaskUnMixBranch(grid_size=1, beta=0.0)


def test_unknown_option_of_mixmask_unmix_lists_every_option():
    with pytest.raises(ValueError) as err:
        branches.build_branch("mixmask_unmix", fill="zero", ratio=0.25)
    message = str(err.value)
    assert message.startswith("branch 'mixmask_unmix' takes no option 'fill'; its options are: ")
    assert set(message.split(": ", 1)[1].split(", ")) == set(branches.branch_options("mixmask_unmix"))


def test_registry_and_branches_agree():
    assert list(branches.BRANCHES) == list(registry.BRANCHES)
    for name, path in registry.BRANCHES.items():
        cls = branches.BRANCHES[name]
        assert cls is branches.branch_class(name) is registry.resolve(registry.BRANCHES, name, "branch")
        assert cls.name == name
        module, attr = path.split(":")
        assert module == cls.__module__ and attr == cls.__name__
        # One file per branch; "none" is the base class itself.
        assert module == ("mixmask_tf.branches.base" if name == "none" else f"mixmask_tf.branches.{name}")
