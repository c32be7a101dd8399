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
