"""Tests of mixmask_tf.branches: every branch's output contract, semantics, XLA and concat."""

import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import branches
from mixmask_tf.ops import mixing
from np_reference import normal_images

SHAPE = (16, 16, 3)

# (name, options) of every branch configuration tested below.
CONFIGS = [
    ("none", {}),
    ("mixmask", {}),
    ("mixmask", dict(per_sample=True, permutation="random", mask_type="discrete")),
    ("unmix", {}),
    ("unmix", dict(global_prob=0.0)),
    ("unmix", dict(global_prob=1.0, beta=2.0)),
    ("mixmask_unmix", {}),
    ("mixmask_unmix", dict(same_permutation=True)),
    ("mixmask_unmix", dict(per_sample=True, mask_type="discrete", switch=False, global_prob=0.0)),
    ("erase", {}),
    ("erase", dict(per_sample=True, fill="noise")),
    ("erase", dict(mask_type="discrete", fill="noise", ratio_range=(0.25, 0.75))),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items())}" for name, opts in CONFIGS]


def images_np(n=8, seed=0):
    return normal_images((n,) + SHAPE, seed)


def check_output(branch, out, n):
    """The BranchOutput contract the trainer relies on."""
    assert isinstance(out, branches.BranchOutput)
    assert isinstance(branch.term_names, tuple) and isinstance(branch.stat_names, tuple)
    names = tuple(t.name for b in out.batches for t in b.terms)
    assert names == branch.term_names
    assert len(set(names)) == len(names), "term names must be unique (one metric each)"
    assert set(out.stats) == set(branch.stat_names)
    for batch in out.batches:
        assert isinstance(batch, branches.QueryBatch) and isinstance(batch.terms, tuple)
        assert batch.images.shape == (n,) + SHAPE
        for term in batch.terms:
            assert isinstance(term, branches.Term)
            assert term.index.dtype == tf.int32 and term.index.shape == (n,)
            assert term.weights.dtype == tf.float32 and term.weights.shape == (n,)
            idx, w = term.index.numpy(), term.weights.numpy()
            assert np.all((idx >= 0) & (idx < n))
            np.testing.assert_array_equal(np.sort(idx), np.arange(n))
            assert np.all((w >= 0) & (w <= 1)), term.name
    for value in out.stats.values():
        assert value.shape == () and value.dtype == tf.float32


def tensors(out):
    """Every tensor of a BranchOutput (term names dropped), in a fixed order."""
    return [v for v in tf.nest.flatten(out) if not isinstance(v, str)]


def repack(like, values):
    """Inverse of `tensors`: a BranchOutput shaped like `like` holding `values`."""
    values = iter(values)
    flat = [v if isinstance(v, str) else next(values) for v in tf.nest.flatten(like)]
    return tf.nest.pack_sequence_as(like, flat)


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_branch_output_contract(name, options):
    branch = branches.build_branch(name, **options)
    assert branch.name == name
    branch.validate(SHAPE)
    x = images_np()
    out = branch(tf.constant(x), tf.constant([3, 4]))
    check_output(branch, out, 8)
    # get_config round-trips through build_branch.
    config = branch.get_config()
    assert config["name"] == name
    assert branches.build_branch(**config).get_config() == config
    # Same seed, same output.
    again = branch(tf.constant(x), tf.constant([3, 4]))
    for a, b in zip(tensors(out), tensors(again)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_none_branch():
    out = branches.build_branch("none")(tf.zeros([4] + list(SHAPE)), tf.constant([1, 2]))
    assert out.batches == () and out.stats == {}


@pytest.mark.parametrize("global_prob", [0.0, 0.5, 1.0])
def test_unmix_branch_terms(global_prob):
    x = images_np(seed=1)
    branch = branches.UnMixBranch(global_prob=global_prob)
    for s in range(3):
        out = branch(tf.constant(x), tf.constant([s, 9]))
        (batch,) = out.batches
        mix, switch = batch.terms
        lam = mix.weights.numpy()
        assert np.all(lam == lam[0])
        np.testing.assert_array_equal(mix.index.numpy(), np.arange(8))
        np.testing.assert_array_equal(switch.index.numpy(), np.arange(8)[::-1])
        np.testing.assert_allclose(switch.weights.numpy(), 1 - lam, atol=1e-7)
        np.testing.assert_allclose(out.stats["lambda_unmix"].numpy(), lam[0], atol=1e-7)
        ref = mixing.unmix(tf.constant(x), tf.constant([s, 9]), global_prob=global_prob)
        np.testing.assert_array_equal(batch.images.numpy(), ref.images.numpy())


@pytest.mark.parametrize("per_sample", [False, True])
def test_mixmask_unmix_permutations(per_sample):
    x = images_np(seed=2)
    seed = tf.constant([5, 6])
    default = branches.MixMaskUnMixBranch(per_sample=per_sample, mask_type="discrete")
    same = branches.MixMaskUnMixBranch(per_sample=per_sample, mask_type="discrete",
                                       same_permutation=True)
    assert default.get_config()["permutation"] == "random"
    assert same.get_config()["permutation"] == "reverse"
    rev = np.arange(8)[::-1]
    for branch, expect_same in ((default, False), (same, True)):
        out = branch(tf.constant(x), seed)
        mm_batch, um_batch = out.batches
        assert [t.name for t in mm_batch.terms] == ["mix", "switch"]
        assert [t.name for t in um_batch.terms] == ["unmix", "unmix_switch"]
        np.testing.assert_array_equal(um_batch.terms[1].index.numpy(), rev)
        switch_index = mm_batch.terms[1].index.numpy()
        assert np.array_equal(switch_index, rev) == expect_same
        # The MixMask batch: mixture i has the fraction λ_i of image i's own pixels and
        # the rest from its partner perm[i] = inverse(switch_index)[i].
        perm = np.argsort(switch_index)
        mixed, lam = mm_batch.images.numpy(), mm_batch.terms[0].weights.numpy()
        own = np.all(mixed == x, axis=-1)
        other = np.all(mixed == x[perm], axis=-1)
        assert np.all(own | other)
        moved = perm != np.arange(8)  # a fixed point of perm mixes its image with itself
        assert moved.sum() >= 4
        np.testing.assert_allclose(own.mean(axis=(1, 2))[moved], lam[moved], atol=1e-6)
        np.testing.assert_allclose(mm_batch.terms[1].weights.numpy(), 1 - lam[switch_index],
                                   atol=1e-6)
        np.testing.assert_allclose(out.stats["lambda"].numpy(), lam.mean(), atol=1e-6)
        np.testing.assert_allclose(out.stats["lambda_unmix"].numpy(),
                                   um_batch.terms[0].weights.numpy().mean(), atol=1e-6)
        if not per_sample:
            assert np.all(lam == lam[0])
    # Independent sub-seeds: neither part reuses the branch seed as is.
    out = default(tf.constant(x), seed)
    plain_unmix = branches.UnMixBranch()(tf.constant(x), seed)
    assert not np.array_equal(out.batches[1].images.numpy(), plain_unmix.batches[0].images.numpy())


def test_erase_branch_semantics():
    x = images_np(seed=3) + 10.0  # no pixel equals the fill
    seed = tf.constant([7, 7])
    for per_sample in (False, True):
        # ratio 0.25: λ != 1 - λ, so swapped weights would show.
        out = branches.EraseBranch(per_sample=per_sample, fill="zero", ratio=0.25)(
            tf.constant(x), seed)
        kept, comp = (b.images.numpy() for b in out.batches)
        (t_kept,), (t_comp,) = (b.terms for b in out.batches)
        assert (t_kept.name, t_comp.name) == ("erase", "erase_complement")
        np.testing.assert_array_equal(t_kept.index.numpy(), np.arange(8))
        np.testing.assert_array_equal(t_comp.index.numpy(), np.arange(8))
        lam = t_kept.weights.numpy()
        np.testing.assert_allclose(t_comp.weights.numpy(), 1 - lam, atol=1e-7)
        # Zero fill: the two images are complementary (M x + (1 - M) x = x).
        np.testing.assert_array_equal(kept + comp, x)
        keep = np.all(kept == x, axis=-1)
        np.testing.assert_array_equal(np.all(kept == 0, axis=-1), ~keep)
        np.testing.assert_allclose(keep.mean(axis=(1, 2)), lam, atol=1e-6)  # λ = kept fraction
        assert np.all((lam > 0) & (lam < 1)) and np.all(lam != 0.5)
        np.testing.assert_allclose(out.stats["lambda"].numpy(), lam.mean(), atol=1e-6)
        if per_sample:
            assert len({k.tobytes() for k in keep}) > 1
        else:
            assert np.all(lam == lam[0]) and np.all(keep == keep[0])
    out = branches.EraseBranch(per_sample=True, fill="noise", ratio=0.25)(tf.constant(x), seed)
    kept, comp = (b.images.numpy() for b in out.batches)
    keep_k = np.all(kept == x, axis=-1)
    keep_c = np.all(comp == x, axis=-1)
    np.testing.assert_array_equal(keep_k, ~keep_c)  # complementary cells
    np.testing.assert_allclose(keep_k.mean(axis=(1, 2)), out.batches[0].terms[0].weights.numpy(),
                               atol=1e-6)
    assert abs(kept[~keep_k].mean()) < 0.1 and abs(kept[~keep_k].std() - 1) < 0.1
    assert abs(comp[~keep_c].mean()) < 0.1 and abs(comp[~keep_c].std() - 1) < 0.1
    assert not np.allclose(kept[~keep_k][:100], comp[~keep_c][:100])  # independent noise


def test_build_branch_and_registry():
    assert set(branches.BRANCHES) == {"none", "mixmask", "unmix", "mixmask_unmix", "erase", "mscn", "saliency"}
    for name, cls in branches.BRANCHES.items():
        assert cls.name == name
        assert isinstance(branches.build_branch(name), cls)
    with pytest.raises(ValueError, match="unknown branch"):
        branches.build_branch("cutmix")


def test_branch_validation():
    with pytest.raises(ValueError, match="global_prob"):
        branches.UnMixBranch(global_prob=1.5)
    with pytest.raises(ValueError, match="beta"):
        branches.UnMixBranch(beta=0.0)
    with pytest.raises(ValueError, match="global_prob"):
        branches.MixMaskUnMixBranch(global_prob=-0.5)
    with pytest.raises(ValueError, match="beta"):
        branches.MixMaskUnMixBranch(beta=-1)
    with pytest.raises(ValueError, match="same_permutation"):
        branches.MixMaskUnMixBranch(same_permutation=True, permutation="random")
    with pytest.raises(ValueError, match="grid_size"):
        branches.MixMaskUnMixBranch(grid_size=1)
    with pytest.raises(ValueError, match="fill must be one of"):
        branches.EraseBranch(fill="mean")
    with pytest.raises(ValueError, match="ratio"):
        branches.EraseBranch(ratio=1.0)
    with pytest.raises(ValueError, match="mask_type"):
        branches.EraseBranch(mask_type="grid")
    for branch in (branches.MixMaskUnMixBranch(grid_size=32), branches.EraseBranch(grid_size=32)):
        with pytest.raises(ValueError, match="grid size 32 is larger than the 16x16 image"):
            branch.validate(SHAPE)
    for branch in (branches.UnMixBranch(), branches.MixMaskUnMixBranch(), branches.EraseBranch()):
        with pytest.raises(ValueError, match="height and width"):
            branch.validate((None, None, 3))
        with pytest.raises(ValueError, match="image_shape"):
            branch.validate((16, 16))
        branch.validate(SHAPE)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", [
    ("unmix", {}),
    ("mixmask_unmix", {}),
    ("erase", dict(per_sample=True, fill="noise")),
], ids=["unmix", "mixmask_unmix", "erase"])
def test_branch_xla(name, options):
    branch = branches.build_branch(name, **options)
    x = tf.constant(images_np(seed=5))
    seed = tf.constant([11, 12])
    eager = branch(x, seed)
    # The compiled function returns the tensors only (string term names are no XLA output;
    # in the trainer they stay python strings inside the compiled step).
    compiled = tf.function(lambda x, s: tensors(branch(x, s)), jit_compile=True)(x, seed)
    check_output(branch, repack(eager, compiled), 8)
    for a, b in zip(tensors(eager), compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_concat_branch_outputs(name, options):
    branch = branches.build_branch(name, **options)
    x = images_np(seed=6)
    halves = [branch(tf.constant(x[:4]), tf.constant([1, 0])),
              branch(tf.constant(x[4:]), tf.constant([1, 1]))]
    out = branches.concat_branch_outputs(halves)
    check_output(branch, out, 8)
    for b, batch in enumerate(out.batches):
        np.testing.assert_array_equal(
            batch.images.numpy(),
            np.concatenate([h.batches[b].images.numpy() for h in halves]))
        for t, term in enumerate(batch.terms):
            idx = term.index.numpy()
            np.testing.assert_array_equal(
                idx, np.concatenate([halves[0].batches[b].terms[t].index.numpy(),
                                     halves[1].batches[b].terms[t].index.numpy() + 4]))
            # Each half only reads its own embeddings.
            np.testing.assert_array_equal(idx // 4, np.arange(8) // 4)
            if term.name in ("mix", "unmix", "erase", "erase_complement"):
                np.testing.assert_array_equal(idx, np.arange(8))
            if term.name == "unmix_switch" or (term.name == "switch" and
                                               branch.get_config()["permutation"] == "reverse"):
                np.testing.assert_array_equal(idx, [3, 2, 1, 0, 7, 6, 5, 4])
            np.testing.assert_array_equal(
                term.weights.numpy(),
                np.concatenate([h.batches[b].terms[t].weights.numpy() for h in halves]))
    for key, value in out.stats.items():
        np.testing.assert_allclose(value.numpy(),
                                   np.mean([h.stats[key].numpy() for h in halves]), atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("mask_type", ["blocked", "discrete"])
def test_mixmask_grid_not_dividing_the_image_xla(mask_type):
    # G = 3 on 28 x 30 images: the mask the branch uses, recovered from the mixture, is constant on
    # the cells of the reference rule (pixel p of H in cell floor(p * G / H)), and λ (the mix
    # term's weight) is its measured mean, under XLA as without it.
    n, height, width, g = 4, 28, 30, 3
    x = tf.constant(np.random.default_rng(2).normal(size=(n, height, width, 1)).astype(np.float32))
    branch = branches.build_branch("mixmask", grid_size=g, mask_type=mask_type, ratio=0.5)
    seed = tf.constant([5, 6])
    eager = branch(x, seed)
    compiled = tf.function(lambda x, s: tensors(branch(x, s)), jit_compile=True)(x, seed)
    for a, b in zip(tensors(eager), compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)
    rows = np.arange(height) * g // height
    cols = np.arange(width) * g // width
    cell = rows[:, None] * g + cols[None, :]
    own, other = x.numpy()[0, ..., 0], x.numpy()[n - 1, ..., 0]  # reverse permutation
    for step in range(4):  # a few masks, so that cell borders where the rules differ are crossed
        out = eager if step == 0 else branch(x, tf.constant([5, 7 + step]))
        mixed = out.batches[0].images.numpy()[0, ..., 0]
        mask = (np.abs(mixed - own) < np.abs(mixed - other)).astype(np.float32)
        np.testing.assert_allclose(mixed, mask * own + (1 - mask) * other, atol=1e-6)
        for c in range(g * g):
            assert len(np.unique(mask[cell == c])) == 1, f"cell {c} is not constant"
        np.testing.assert_allclose(out.batches[0].terms[0].weights.numpy(), mask.mean(), atol=1e-6)
        np.testing.assert_allclose(float(out.stats["lambda"]), mask.mean(), atol=1e-6)
