"""MixMask (Vishniakov et al.): fill the masked-out grid cells of each query image with another image."""

import tensorflow as tf

from mixmask_tf.ops import mixing
from mixmask_tf.branches.base import BranchOutput, MaskedBranch, QueryBatch, mixture_terms


class MixMaskBranch(MaskedBranch):
    """MixMask: one mixed query batch, terms "mix" (λ) and "switch" (1 − λ); stat "lambda".

    Args:
      permutation: "reverse" (default, image i mixes with N−1−i) or "random".
      switch: keep the (1 − λ) switch term (the paper's default); False for the ablation.
      **mask_options: the :class:`MaskOptions` (grid_size, mask_type, ratio, ratio_range,
        per_sample, min_block_cells).
    """

    name = "mixmask"
    term_names = ("mix", "switch")
    stat_names = ("lambda",)

    def __init__(self, permutation="reverse", switch=True, **mask_options):
        super().__init__(**mask_options)
        if permutation not in mixing.PERMUTATIONS:
            raise ValueError(
                f"unknown permutation {permutation!r}; choose one of {', '.join(mixing.PERMUTATIONS)}")
        self.permutation = permutation
        self.switch = bool(switch)
        self.term_names = ("mix", "switch") if self.switch else ("mix",)

    def validate(self, image_shape):
        # As before the split: only the first two entries of the shape are read.
        self.mask.check_image_size(tuple(image_shape[:2]))

    def __call__(self, images, seed):
        mixture = mixing.mixmask(images, seed, permutation=self.permutation, **self.mask.as_dict())
        terms = mixture_terms(mixture, "mix", "switch" if self.switch else None)
        batch = QueryBatch(images=mixture.images, terms=terms)
        return BranchOutput(batches=(batch,), stats={"lambda": tf.reduce_mean(mixture.weights)})

    def get_config(self):
        return {**super().get_config(), "permutation": self.permutation, "switch": self.switch}
