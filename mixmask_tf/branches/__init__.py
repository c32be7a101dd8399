"""Branches: how a trainer's views are transformed, and the extra query batches it encodes besides them.

One file per branch on the contract in :mod:`~mixmask_tf.branches.base` (``Term``,
``QueryBatch``, ``BranchOutput``, ``Branch``, ``MaskOptions``, ``build_branch``):

* "none" (``base.Branch``): no extra batch (the plain framework).
* "mixmask" (``mixmask.py``): MixMask, one batch, terms "mix" (λ) and "switch" (1 − λ).
* "unmix" (``unmix.py``): Un-Mix (Mixup/CutMix, one λ per step), one batch, terms "unmix" (λ)
  and "unmix_switch" (1 − λ, the reversed embeddings).
* "mixmask_unmix" (``mixmask_unmix.py``): MixMask* of the paper, both of the above with
  independent sub-seeds and (by default) different permutations: two batches, terms "mix",
  "switch", "unmix", "unmix_switch".
* "erase" (``erase.py``): the erase-based baseline (paper Table 4): two batches, "erase" (the
  image with its (1 − M) cells erased, weight λ) and "erase_complement" (its M cells erased,
  weight 1 − λ).
* "mscn" (``mscn.py``): Masked Siamese ConvNets: a high-pass input filter, noise-filled masks
  on every view (``prepare_views``), two extra masked views, the loss over every pair.

* "saliency" (``saliency.py``): saliency-guided masking of the query view (foreground/background
  cells from a localisation network's map) and hard negatives (the key view with foreground
  cells masked) through ``prepare_views`` and ``NegativeBatch``.

A new branch is one more file here, one line in ``mixmask_tf.registry`` and, if it has options, their
declaration in ``mixmask_tf.options`` (docs/adding-a-branch.md).
"""

from mixmask_tf import registry
from mixmask_tf.branches.base import (MASK_OPTIONS, Branch, BranchOutput, MaskedBranch, MaskOptions, QueryBatch,
                                      NegativeBatch, Term, ViewsOutput, branch_class, branch_options, build_branch,
                                      concat_branch_outputs, concat_views_outputs, image_hw, mixture_terms)
from mixmask_tf.branches.erase import EraseBranch
from mixmask_tf.branches.mixmask import MixMaskBranch
from mixmask_tf.branches.mixmask_unmix import MixMaskUnMixBranch
from mixmask_tf.branches.mscn import MSCNBranch
from mixmask_tf.branches.saliency import SaliencyBranch
from mixmask_tf.branches.unmix import UnMixBranch

# Name -> branch class, from the registry.
BRANCHES = {name: branch_class(name) for name in registry.BRANCHES}

__all__ = ["Term", "QueryBatch", "BranchOutput", "NegativeBatch", "ViewsOutput", "Branch", "MaskOptions", "MASK_OPTIONS",
           "MaskedBranch", "image_hw", "mixture_terms", "branch_class", "branch_options", "build_branch",
           "concat_branch_outputs", "concat_views_outputs", "MixMaskBranch", "UnMixBranch", "MixMaskUnMixBranch",
           "EraseBranch", "MSCNBranch", "SaliencyBranch", "BRANCHES"]
