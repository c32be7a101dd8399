"""Branches: what extra query batches a trainer encodes besides the clean views.

A branch knows masks and mixtures, never a framework. It turns the query view of a (local)
batch into extra query batches, each with one or more *terms*. A term says how to read the
batch's embeddings and how much each sample counts:

    loss_term = mean_i( weights[i] · L(embed(batch)[index[i]], target_i) )

where target_i is the framework's clean target of image i (MoCo: its key). The MixMask
branch yields one mixed batch with two terms: "mix" (index = identity, weights = λ_i) and
"switch" (index = the switch indices, weights = 1 − λ of the switch mixture), so the switch
embeddings cost no second forward pass (ALGORITHMS.md section 2).

A later branch (Un-Mix, erase, MSCN, saliency) is a new class with the same `__call__`.
"""

from typing import NamedTuple

import tensorflow as tf

from mixmask_tf import masks as masks_lib
from mixmask_tf import mixing


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
        n = tf.shape(images)[0]
        terms = [Term("mix", tf.range(n, dtype=tf.int32), mixture.weights)]
        if self.switch:
            terms.append(Term("switch", tf.cast(mixture.switch_index, tf.int32), mixture.switch_weights))
        batch = QueryBatch(images=mixture.images, terms=tuple(terms))
        return BranchOutput(batches=(batch,), stats={"lambda": tf.reduce_mean(mixture.weights)})

    def get_config(self):
        return {"name": self.name, "grid_size": self.grid_size, "mask_type": self.mask_type,
                "ratio": self.ratio, "ratio_range": self.ratio_range, "per_sample": self.per_sample,
                "permutation": self.permutation, "switch": self.switch,
                "min_block_cells": self.min_block_cells}


BRANCHES = {"none": Branch, "mixmask": MixMaskBranch}


def build_branch(name, **options):
    """Builds a branch by name with its options (see each class); ValueError for an unknown name."""
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
