"""Erase-based masking (the MixMask paper's Table 4 baseline, MSCN-style): masked cells filled, not mixed."""

import tensorflow as tf

from mixmask_tf.ops import masks as masks_lib
from mixmask_tf.ops import mixing
from mixmask_tf import seeds
from mixmask_tf.branches.base import BranchOutput, MaskedBranch, QueryBatch, Term


class EraseBranch(MaskedBranch):
    """Two query batches from one grid mask M, each paired with the image's own target.

    With λ = mean of the full-resolution M [ours, docs/algorithms.md, "erase"]: "erase" =
    `M·x + (1 − M)·fill` (keeps the M cells), weights λ; "erase_complement" =
    `(1 − M)·x + M·fill` (keeps the 1 − M cells), weights 1 − λ. Same signal as MixMask
    (two terms weighted λ and 1 − λ) at the cost of two extra query forwards. Stat "lambda".

    Args:
      fill: "zero" (0, the mean of normalised data) or "noise" (standard Gaussian, drawn
        independently for the two batches).
      **mask_options: the :class:`MaskOptions` (grid_size, mask_type, ratio, ratio_range,
        per_sample, min_block_cells).
    """

    name = "erase"
    term_names = ("erase", "erase_complement")
    stat_names = ("lambda",)

    def __init__(self, fill="zero", **mask_options):
        super().__init__(**mask_options)
        if fill not in mixing.FILLS:
            raise ValueError(f"fill must be one of {', '.join(mixing.FILLS)}, got {fill!r}")
        self.fill = fill

    def __call__(self, images, seed):
        images = tf.convert_to_tensor(images)
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(f"images need a static height and width, got {images.shape}.")
        self.mask.check_image_size((height, width))
        sub = seeds.split_canonical(seed, 3)
        n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        mask = self.mask
        grids = masks_lib.grid_masks(sub[0], n if mask.per_sample else 1, mask.grid_size,
                                     mask_type=mask.mask_type, ratio=mask.ratio,
                                     ratio_range=mask.ratio_range, min_block_cells=mask.min_block_cells)
        masks = masks_lib.upsample_masks(grids, height, width)
        lam = masks_lib.mask_fraction(masks)
        if not mask.per_sample:
            lam = tf.fill([n], lam[0])
        kept = mixing.erase(images, masks, fill=self.fill, seed=sub[1])
        complement = mixing.erase(images, 1.0 - masks, fill=self.fill, seed=sub[2])
        index = tf.range(tf.shape(images)[0], dtype=tf.int32)
        return BranchOutput(
            batches=(QueryBatch(kept, (Term("erase", index, lam),)),
                     QueryBatch(complement, (Term("erase_complement", index, 1.0 - lam),))),
            stats={"lambda": tf.reduce_mean(lam)})

    def get_config(self):
        return {**super().get_config(), "fill": self.fill}
