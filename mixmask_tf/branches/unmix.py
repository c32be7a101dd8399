"""Un-Mix (Shen et al. 2022): a Mixup or CutMix of the query batch with its reverse."""

import tensorflow as tf

from mixmask_tf.ops import mixing
from mixmask_tf.branches.base import Branch, BranchOutput, QueryBatch, image_hw, mixture_terms


class UnMixBranch(Branch):
    """Un-Mix: one λ ~ Beta(beta, beta) and one mode per call (per step and replica).

    With probability `global_prob` the global mixup `λ·x + (1 − λ)·rev(x)`, otherwise a CutMix
    box of rev(x) pasted into x (λ re-measured on the clipped box); see `mixing.unmix`.

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
        image_hw(image_shape)

    def __call__(self, images, seed):
        mixture = mixing.unmix(images, seed, global_prob=self.global_prob, beta=self.beta,
                               permutation=self.permutation)
        batch = QueryBatch(images=mixture.images,
                           terms=mixture_terms(mixture, "unmix", "unmix_switch"))
        return BranchOutput(batches=(batch,),
                            stats={"lambda_unmix": tf.reduce_mean(mixture.weights)})

    def get_config(self):
        return {"name": self.name, "global_prob": self.global_prob, "beta": self.beta,
                "permutation": self.permutation}
