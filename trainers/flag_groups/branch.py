"""Branch flags: which branch, and its mask and mixture options."""

from absl import flags

from mixmask_tf import registry

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("branch", "mixmask", list(registry.BRANCHES),
                  "Extra query branch: MixMask, Un-Mix, MixMask* (both), or erase-based masking.")
flags.DEFINE_float("unmix_prob", 0.5, "Un-Mix: probability P of the global (Mixup) mixture, else region (CutMix).")
flags.DEFINE_float("unmix_beta", 1.0, "Un-Mix: lambda ~ Beta(beta, beta).")
flags.DEFINE_boolean("same_permutation", False, "MixMask*: use Un-Mix's reverse permutation for MixMask too (ablation).")
flags.DEFINE_enum("erase_fill", "zero", ["zero", "noise"], "Erase branch: fill of the erased cells.")
flags.DEFINE_integer("grid_size", 4, "MixMask grid size G (2 CIFAR, 4 Tiny-ImageNet, 8 ImageNet in the paper).")
flags.DEFINE_enum("mask_type", "blocked", ["blocked", "discrete"],
                  "Mask pattern: BEiT-style blocks of grid cells, or each cell independently.")
flags.DEFINE_float("mask_ratio", 0.5,
                   "Mask ratio r in (0, 1) (the reference code's --mask_lam). Its direction depends on "
                   "--mask_type, as in the reference code: blocked masks set floor(r * G^2) cells (at most) to "
                   "keep the image's own pixels, so each image keeps lambda ~= r of itself; discrete masks "
                   "keep each cell with probability 1 - r, so lambda ~= 1 - r. lambda (the measured fraction "
                   "of the upsampled mask) weights the mix term, 1 - lambda the switch term; at 0.5 the two "
                   "types agree, and r and 1 - r are equivalent under that loss.")
flags.DEFINE_list("mask_ratio_range", None,
                  "Draw the ratio from U(a, b) per mask: 'a,b' (same direction as --mask_ratio).")
flags.DEFINE_boolean("per_sample_mask", False, "One mask and λ per image instead of per batch.")
flags.DEFINE_enum("permutation", "reverse", ["reverse", "random"],
                  "MixMask: which image fills the masked cells (MixMask* uses random unless --same_permutation).")
flags.DEFINE_boolean("switch_term", True, "Keep the (1 - λ) switch term.")
flags.DEFINE_integer("min_block_cells", None, "Blocked masks: minimum block (default 4, or 1 at G=2).")


def ratio_range():
    """--mask_ratio_range as (a, b), or None; raises UserError when malformed."""
    if FLAGS.mask_ratio_range is None:
        return None
    if len(FLAGS.mask_ratio_range) != 2:
        raise UserError(f"--mask_ratio_range takes two numbers 'a,b', got {','.join(FLAGS.mask_ratio_range)}")
    try:
        return tuple(float(v) for v in FLAGS.mask_ratio_range)
    except ValueError as e:
        raise UserError(f"--mask_ratio_range: {e}") from e


def validate():
    """Checks the branch flags that absl's types cannot; raises UserError."""
    ratio_range()


def option_values():
    """Branch option -> the value its flag gives (every option of every branch, by option name).

    MixMask*'s `permutation` is not set from --permutation: it follows --same_permutation (random,
    or Un-Mix's reverse), as the flag's help says.
    """
    f = FLAGS
    return dict(grid_size=f.grid_size, mask_type=f.mask_type, ratio=f.mask_ratio, ratio_range=ratio_range(),
                per_sample=f.per_sample_mask, min_block_cells=f.min_block_cells,
                permutation=None if f.branch == "mixmask_unmix" else f.permutation, switch=f.switch_term,
                global_prob=f.unmix_prob, beta=f.unmix_beta, same_permutation=f.same_permutation,
                fill=f.erase_fill)


def build_branch():
    """The --branch with the options it takes (``branches.branch_options``), from their flags.

    An option no flag sets keeps the branch's default.
    """
    from mixmask_tf import branches

    values = option_values()
    return branches.build_branch(FLAGS.branch, **{name: values[name] for name in branches.branch_options(FLAGS.branch)
                                                  if name in values})
