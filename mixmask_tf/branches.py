"""Branches: what extra query batches a trainer encodes besides the clean views.

A branch knows masks and mixtures, never a framework. It turns the query view of a (local)
batch into extra query batches, each with one or more *terms*. A term says how to read the
batch's embeddings and how much each sample counts:

    loss_term = mean_i( weights[i] · L(embed(batch)[index[i]], target_i) )

where target_i is the framework's clean target of image i (MoCo: its key). The MixMask
branch yields one mixed batch with two terms: "mix" (index = identity, weights = λ_i) and
"switch" (index = the switch indices, weights = 1 − λ of the switch mixture), so the switch
embeddings cost no second forward pass (ALGORITHMS.md section 2).

Branches (`BRANCHES`, built by name with `build_branch`):

* "none": no extra batch (the plain framework).
* "mixmask": MixMask, one batch, terms "mix" (λ) and "switch" (1 − λ).
* "unmix": Un-Mix (Mixup/CutMix, one λ per step), one batch, terms "unmix" (λ) and
  "unmix_switch" (1 − λ, the reversed embeddings).
* "mixmask_unmix": MixMask* of the paper, both of the above with independent sub-seeds and
  (by default) different permutations: two batches, terms "mix", "switch", "unmix",
  "unmix_switch".
* "erase": the erase-based baseline (paper Table 4): two batches, "erase" (the image with its
  (1 − M) cells erased, weight λ) and "erase_complement" (its M cells erased, weight 1 − λ).

Every branch has static `term_names` and `stat_names` tuples equal to what `__call__` returns
(the trainer creates its metrics from them), `validate(image_shape)` and `get_config()` (which
round-trips through `build_branch(**config)`).

A later branch (MSCN, saliency) is a new class with the same `__call__`.
"""

from typing import NamedTuple

import tensorflow as tf

from mixmask_tf import masks as masks_lib
from mixmask_tf import mixing
from mixmask_tf import seeds


class Term(NamedTuple):
    """One weighted loss term read from a query batch's embeddings.

    name: python str, used for the metric `loss_<name>`.
    index: [N] int32, embeddings row to pair with target i.
    weights: [N] float32 per-sample weight.
    """

    name: str
    index: tf.Tensor
    weights: tf.Tensor


class QueryBatch(NamedTuple):
    """images: [N, H, W, C] an extra batch for the query encoder; terms: tuple of Term."""

    images: tf.Tensor
    terms: tuple


class BranchOutput(NamedTuple):
    """batches: tuple of QueryBatch; stats: dict name -> scalar (e.g. "lambda")."""

    batches: tuple
    stats: dict


class Branch:
    """Base class: the `none` branch (no extra query batches)."""

    name = "none"
    term_names = ()
    stat_names = ()

    def validate(self, image_shape):
        """Raises ValueError when the branch cannot work on images of `image_shape` (H, W, C)."""

    def __call__(self, images, seed):
        """Args: images [N, H, W, C] float query view; seed [2] int stateless seed.

        Returns: BranchOutput.
        """
        del images, seed
        return BranchOutput(batches=(), stats={})

    def get_config(self):
        return {"name": self.name}


class MixMaskBranch(Branch):
    """MixMask: fill the masked-out grid cells of each query image with another image.

    Args:
      grid_size: G, the mask is a G×G grid upsampled to the image (nearest).
      mask_type: "blocked" (BEiT block-wise) or "discrete".
      ratio: constant mask ratio in (0, 1); ignored when `ratio_range` is given.
      ratio_range: (a, b) to draw the ratio from U(a, b) per mask, or None.
      per_sample: False (default, as the reference code): one mask for the whole batch;
        True: each image its own mask and λ_i [ours].
      permutation: "reverse" (default, image i mixes with N−1−i) or "random".
      switch: keep the (1 − λ) switch term (the paper's default); False for the ablation.
      min_block_cells: minimum block size of the blocked generator; None = 4 except where a
        4-cell block cannot fit (G = 2: 1). Pass 4 to reproduce the reference generator exactly.
    """

    name = "mixmask"
    term_names = ("mix", "switch")
    stat_names = ("lambda",)

    def __init__(self, grid_size=4, mask_type="blocked", ratio=0.5, ratio_range=None,
                 per_sample=False, permutation="reverse", switch=True, min_block_cells=None):
        masks_lib.validate_mask_args(grid_size, ratio, ratio_range, mask_type)
        if permutation not in mixing.PERMUTATIONS:
            raise ValueError(
                f"unknown permutation {permutation!r}; choose one of {', '.join(mixing.PERMUTATIONS)}")
        self.grid_size = int(grid_size)
        self.mask_type = mask_type
        self.ratio = float(ratio)
        self.ratio_range = tuple(float(r) for r in ratio_range) if ratio_range else None
        self.per_sample = bool(per_sample)
        self.permutation = permutation
        self.switch = bool(switch)
        self.min_block_cells = min_block_cells
        self.term_names = ("mix", "switch") if self.switch else ("mix",)

    def validate(self, image_shape):
        masks_lib.validate_mask_args(self.grid_size, self.ratio, self.ratio_range, self.mask_type,
                                     image_size=tuple(image_shape[:2]))

    def __call__(self, images, seed):
        mixture = mixing.mixmask(
            images, seed, self.grid_size, mask_type=self.mask_type, ratio=self.ratio,
            ratio_range=self.ratio_range, per_sample=self.per_sample,
            permutation=self.permutation, min_block_cells=self.min_block_cells)
        terms = _mixture_terms(mixture, "mix", "switch" if self.switch else None)
        batch = QueryBatch(images=mixture.images, terms=terms)
        return BranchOutput(batches=(batch,), stats={"lambda": tf.reduce_mean(mixture.weights)})

    def get_config(self):
        return {"name": self.name, "grid_size": self.grid_size, "mask_type": self.mask_type,
                "ratio": self.ratio, "ratio_range": self.ratio_range, "per_sample": self.per_sample,
                "permutation": self.permutation, "switch": self.switch,
                "min_block_cells": self.min_block_cells}


def _validate_image_shape(image_shape):
    """(H, W) of an image shape (H, W, C) with static positive H and W, else ValueError."""
    try:
        height, width, _ = image_shape
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape!r}.") from None
    if not (masks_lib._is_int(height) and masks_lib._is_int(width)) or height < 1 or width < 1:
        raise ValueError(f"the images need a static positive height and width, got {image_shape!r}.")
    return height, width


def _mixture_terms(mixture, name, switch_name):
    """Terms of a mixture: `name` (identity, λ) and, if `switch_name`, (switch_index, 1 − λ)."""
    n = tf.shape(mixture.images)[0]
    terms = [Term(name, tf.range(n, dtype=tf.int32), mixture.weights)]
    if switch_name:
        terms.append(Term(switch_name, tf.cast(mixture.switch_index, tf.int32), mixture.switch_weights))
    return tuple(terms)


class UnMixBranch(Branch):
    """Un-Mix (Shen et al. 2022): a Mixup or CutMix of the query batch with its reverse.

    One λ ~ Beta(beta, beta) and one mode per call (per step and replica): with probability
    `global_prob` the global mixup `λ·x + (1 − λ)·rev(x)`, otherwise a CutMix box of rev(x)
    pasted into x (λ re-measured on the clipped box); see `mixing.unmix`.

    One query batch with terms "unmix" (identity index, weights λ) and "unmix_switch" (the
    reversed embeddings, weights 1 − λ); stat "lambda_unmix" (λ after the region correction).

    Args:
      global_prob: probability in [0, 1] of the mixup mode (Un-Mix CIFAR code and paper
        Table 3: 0.5; the ImageNet code's default 0.0 is region only).
      beta: λ ~ Beta(beta, beta), beta > 0 (Un-Mix: 1).
      permutation: "reverse" (Un-Mix) or "random".
    """

    name = "unmix"
    term_names = ("unmix", "unmix_switch")
    stat_names = ("lambda_unmix",)

    def __init__(self, global_prob=0.5, beta=1.0, permutation="reverse"):
        mixing.validate_unmix_args(global_prob, beta, permutation)
        self.global_prob = float(global_prob)
        self.beta = float(beta)
        self.permutation = permutation

    def validate(self, image_shape):
        _validate_image_shape(image_shape)

    def __call__(self, images, seed):
        mixture = mixing.unmix(images, seed, global_prob=self.global_prob, beta=self.beta,
                               permutation=self.permutation)
        batch = QueryBatch(images=mixture.images,
                           terms=_mixture_terms(mixture, "unmix", "unmix_switch"))
        return BranchOutput(batches=(batch,),
                            stats={"lambda_unmix": tf.reduce_mean(mixture.weights)})

    def get_config(self):
        return {"name": self.name, "global_prob": self.global_prob, "beta": self.beta,
                "permutation": self.permutation}


class MixMaskUnMixBranch(Branch):
    """MixMask* (the paper's Un-Mix + MixMask): both branches, their loss terms summed.

    The Un-Mix part always uses the reverse permutation; the MixMask part a different random
    permutation by default (paper Table 2: different permutations beat the same one), or the
    same reverse permutation with `same_permutation=True` (the ablation). The two parts draw
    from independent sub-seeds. Cost: 2 extra query forwards per step.

    Two query batches: the MixMask batch (terms "mix", "switch") and the Un-Mix batch (terms
    "unmix", "unmix_switch"); stats "lambda" (MixMask λ) and "lambda_unmix".

    Args:
      grid_size, mask_type, ratio, ratio_range, per_sample, switch, min_block_cells: as
        `MixMaskBranch`.
      permutation: the MixMask part's permutation; None (default) = "random", or "reverse"
        when `same_permutation`.
      same_permutation: True: the MixMask part uses the Un-Mix (reverse) permutation.
      global_prob, beta: as `UnMixBranch`.
    """

    name = "mixmask_unmix"
    term_names = ("mix", "switch", "unmix", "unmix_switch")
    stat_names = ("lambda", "lambda_unmix")

    def __init__(self, grid_size=4, mask_type="blocked", ratio=0.5, ratio_range=None,
                 per_sample=False, permutation=None, switch=True, min_block_cells=None,
                 global_prob=0.5, beta=1.0, same_permutation=False):
        self.same_permutation = bool(same_permutation)
        if permutation is None:
            permutation = "reverse" if self.same_permutation else "random"
        elif self.same_permutation and permutation != "reverse":
            raise ValueError(
                f"same_permutation=True makes MixMask use the Un-Mix permutation 'reverse'; "
                f"got permutation={permutation!r} as well.")
        self.mixmask = MixMaskBranch(grid_size=grid_size, mask_type=mask_type, ratio=ratio,
                                     ratio_range=ratio_range, per_sample=per_sample,
                                     permutation=permutation, switch=switch,
                                     min_block_cells=min_block_cells)
        self.unmix = UnMixBranch(global_prob=global_prob, beta=beta, permutation="reverse")
        self.term_names = self.mixmask.term_names + self.unmix.term_names

    def validate(self, image_shape):
        self.unmix.validate(image_shape)
        self.mixmask.validate(image_shape)

    def __call__(self, images, seed):
        mixmask_seed, unmix_seed = seeds.split_pair(seed)
        mm = self.mixmask(images, mixmask_seed)
        um = self.unmix(images, unmix_seed)
        return BranchOutput(batches=mm.batches + um.batches, stats={**mm.stats, **um.stats})

    def get_config(self):
        config = self.mixmask.get_config()
        config.update(self.unmix.get_config())
        config.update(name=self.name, permutation=self.mixmask.permutation,
                      same_permutation=self.same_permutation)
        return config


class EraseBranch(Branch):
    """Erase-based baseline (paper Table 4, MSCN-style): masked cells filled, not mixed.

    With a grid mask M (as `MixMaskBranch`; λ = mean of the full-resolution M) two query
    batches, each paired with the image's own target [ours, ALGORITHMS.md section 2]:
    "erase" = `M·x + (1 − M)·fill` (keeps the M cells), weights λ; "erase_complement" =
    `(1 − M)·x + M·fill` (keeps the 1 − M cells), weights 1 − λ. Same signal as MixMask
    (two terms weighted λ and 1 − λ) at the cost of two extra query forwards. Stat "lambda".

    Args:
      grid_size, mask_type, ratio, ratio_range, per_sample, min_block_cells: as
        `MixMaskBranch`.
      fill: "zero" (0, the mean of normalised data) or "noise" (standard Gaussian, drawn
        independently for the two batches).
    """

    name = "erase"
    term_names = ("erase", "erase_complement")
    stat_names = ("lambda",)

    def __init__(self, grid_size=4, mask_type="blocked", ratio=0.5, ratio_range=None,
                 per_sample=False, fill="zero", min_block_cells=None):
        masks_lib.validate_mask_args(grid_size, ratio, ratio_range, mask_type)
        if fill not in mixing.FILLS:
            raise ValueError(f"fill must be one of {', '.join(mixing.FILLS)}, got {fill!r}")
        self.grid_size = int(grid_size)
        self.mask_type = mask_type
        self.ratio = float(ratio)
        self.ratio_range = tuple(float(r) for r in ratio_range) if ratio_range else None
        self.per_sample = bool(per_sample)
        self.fill = fill
        self.min_block_cells = min_block_cells

    def validate(self, image_shape):
        height, width = _validate_image_shape(image_shape)
        masks_lib.validate_mask_args(self.grid_size, self.ratio, self.ratio_range, self.mask_type,
                                     image_size=(height, width))

    def __call__(self, images, seed):
        images = tf.convert_to_tensor(images)
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(f"images need a static height and width, got {images.shape}.")
        masks_lib.validate_mask_args(self.grid_size, self.ratio, self.ratio_range, self.mask_type,
                                     image_size=(height, width))
        sub = seeds.split_canonical(seed, 3)
        n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        grids = masks_lib.grid_masks(sub[0], n if self.per_sample else 1, self.grid_size,
                                     mask_type=self.mask_type, ratio=self.ratio,
                                     ratio_range=self.ratio_range,
                                     min_block_cells=self.min_block_cells)
        masks = masks_lib.upsample_masks(grids, height, width)
        lam = masks_lib.mask_fraction(masks)
        if not self.per_sample:
            lam = tf.fill([n], lam[0])
        kept = mixing.erase(images, masks, fill=self.fill, seed=sub[1])
        complement = mixing.erase(images, 1.0 - masks, fill=self.fill, seed=sub[2])
        index = tf.range(tf.shape(images)[0], dtype=tf.int32)
        return BranchOutput(
            batches=(QueryBatch(kept, (Term("erase", index, lam),)),
                     QueryBatch(complement, (Term("erase_complement", index, 1.0 - lam),))),
            stats={"lambda": tf.reduce_mean(lam)})

    def get_config(self):
        return {"name": self.name, "grid_size": self.grid_size, "mask_type": self.mask_type,
                "ratio": self.ratio, "ratio_range": self.ratio_range, "per_sample": self.per_sample,
                "fill": self.fill, "min_block_cells": self.min_block_cells}


BRANCHES = {"none": Branch, "mixmask": MixMaskBranch, "unmix": UnMixBranch,
            "mixmask_unmix": MixMaskUnMixBranch, "erase": EraseBranch}


def build_branch(name, **options):
    """Builds a branch by name with its options (see each class); ValueError for an unknown name.

    `build_branch(**branch.get_config())` rebuilds an equal branch.
    """
    if name not in BRANCHES:
        raise ValueError(f"unknown branch {name!r}; choose one of {', '.join(BRANCHES)}")
    return BRANCHES[name](**options)


def concat_branch_outputs(outputs):
    """Concatenates branch outputs computed on consecutive chunks of one batch.

    Indices of chunk g are offset by the sizes of the chunks before it and stats are averaged,
    so the result equals what the branch would give if each chunk were one replica's batch.
    Used to build the single-device reference of a multi-replica step.

    Args:
      outputs: list of BranchOutput with the same structure.

    Returns:
      BranchOutput over the concatenated batch.
    """
    batches = []
    for b in range(len(outputs[0].batches)):
        chunks = [out.batches[b] for out in outputs]
        offsets, total = [], 0
        for chunk in chunks:
            offsets.append(total)
            total += tf.shape(chunk.images)[0]
        terms = []
        for t, term in enumerate(chunks[0].terms):
            terms.append(Term(
                term.name,
                tf.concat([c.terms[t].index + off for c, off in zip(chunks, offsets)], 0),
                tf.concat([c.terms[t].weights for c in chunks], 0)))
        batches.append(QueryBatch(tf.concat([c.images for c in chunks], 0), tuple(terms)))
    stats = {k: tf.reduce_mean(tf.stack([o.stats[k] for o in outputs])) for k in outputs[0].stats}
    return BranchOutput(tuple(batches), stats)
