"""MixMask* (the MixMask paper's Un-Mix + MixMask): both branches, their loss terms summed."""

from mixmask_tf import seeds
from mixmask_tf.branches.base import Branch, BranchOutput, MaskOptions
from mixmask_tf.branches.mixmask import MixMaskBranch
from mixmask_tf.branches.unmix import UnMixBranch


class MixMaskUnMixBranch(Branch):
    """MixMask*: a MixMask branch and an Un-Mix branch on the same query view.

    The Un-Mix part always uses the reverse permutation; the MixMask part a different random
    permutation by default (paper Table 2: different permutations beat the same one), or the
    same reverse permutation with `same_permutation=True` (the ablation). The two parts draw
    from independent sub-seeds. Cost: 2 extra query forwards per step.

    Two query batches: the MixMask batch (terms "mix", "switch") and the Un-Mix batch (terms
    "unmix", "unmix_switch"); stats "lambda" (MixMask λ) and "lambda_unmix".

    Args:
      permutation: the MixMask part's permutation; None (default) = "random", or "reverse"
        when `same_permutation`.
      switch: as `MixMaskBranch`.
      global_prob, beta: as `UnMixBranch`.
      same_permutation: True: the MixMask part uses the Un-Mix (reverse) permutation.
      **mask_options: the MixMask part's :class:`MaskOptions`.
    """

    name = "mixmask_unmix"
    term_names = ("mix", "switch", "unmix", "unmix_switch")
    stat_names = ("lambda", "lambda_unmix")

    def __init__(self, permutation=None, switch=True, global_prob=0.5, beta=1.0, same_permutation=False,
                 **mask_options):
        self.same_permutation = bool(same_permutation)
        if permutation is None:
            permutation = "reverse" if self.same_permutation else "random"
        elif self.same_permutation and permutation != "reverse":
            raise ValueError(
                f"same_permutation=True makes MixMask use the Un-Mix permutation 'reverse'; "
                f"got permutation={permutation!r} as well.")
        self.mixmask = MixMaskBranch(permutation=permutation, switch=switch, **mask_options)
        self.unmix = UnMixBranch(global_prob=global_prob, beta=beta, permutation="reverse")
        self.term_names = self.mixmask.term_names + self.unmix.term_names

    @property
    def mask(self) -> MaskOptions:
        """The MixMask part's mask options."""
        return self.mixmask.mask

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
