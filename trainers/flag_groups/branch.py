"""Branch flags: which branch, and its mask and mixture options."""

from absl import flags

from mixmask_tf import registry

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("branch", "mixmask", list(registry.BRANCHES),
                  "Branch: MixMask, Un-Mix, MixMask* (both), erase-based masking, or MSCN (Masked Siamese "
                  "ConvNets: high-pass filter, masks on every view, two extra views; --mscn_* flags).")
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
# MSCN (--branch=mscn). [ours] marks the defaults the paper leaves open (README "MSCN").
flags.DEFINE_float("mscn_ratio", 0.15, "MSCN: masked fraction of the grid cells of a query-side view's random grid "
                   "mask (the paper's best for ResNet-50: 0.15; stable up to 0.5).")
flags.DEFINE_float("mscn_key_ratio", None, "MSCN: the same for the key-side views (view 2, 4, ...); default "
                   "--mscn_ratio [ours].")
flags.DEFINE_integer("mscn_grid_size", 7, "MSCN: G of the G x G random grid mask (7 = the paper's 32-px cells at 224 px).")
flags.DEFINE_float("mscn_noise_std", 0.18, "MSCN: std of the Gaussian noise filling masked pixels [ours: the saliency "
                   "authors' value].")
flags.DEFINE_float("mscn_focal_prob", 0.4, "MSCN: probability of a focal mask (keep one square, mask the rest) instead "
                   "of a grid mask (the paper's best: 0.4).")
flags.DEFINE_float("mscn_focal_size", 0.9, "MSCN: side of the kept focal square as a fraction of the shorter image "
                   "side [ours: 200 px at 224, the saliency authors' value].")
flags.DEFINE_float("mscn_channel_prob", 0.7, "MSCN: probability that a grid mask is channel-independent (each colour "
                   "channel its own cells) [ours: the paper says 'high'; the saliency authors use 0.7].")
flags.DEFINE_float("mscn_mask_prob", 1.0, "MSCN: probability that a query-side view is masked at all [ours].")
flags.DEFINE_float("mscn_key_mask_prob", None, "MSCN: the same for the key side; default --mscn_mask_prob [ours].")
flags.DEFINE_integer("mscn_extra_views", 2, "MSCN: extra masked full-resolution views, each its own augmentation "
                     "(the paper: 2); the loss is averaged over every pair of views.")
flags.DEFINE_float("highpass_sigma", None, "MSCN: sigma (pixels) of the high-pass input filter x - GaussianBlur(x); "
                   "default 5 * min(H, W) / 224 (the paper's 5 at 224 px, scaled) [ours: the scaling].")
flags.DEFINE_integer("highpass_radius", None, "MSCN: kernel radius of the filter (2r + 1 taps); default ceil(3 sigma) [ours].")
flags.DEFINE_boolean("highpass", True, "MSCN: apply the high-pass input filter (off only for ablations).")
# Saliency-guided masking (--branch=saliency; mixmask_tf/branches/saliency.py). None = the fill's default.
flags.DEFINE_enum("saliency_fill", "highpass", ["highpass", "blur", "mean"],
                  "Saliency: fill of masked cells: high-pass filter + noise, strong blur, or per-channel mean.")
flags.DEFINE_list("saliency_query_ratio", ["0.05", "0.25"], "Saliency: 'a,b': r ~ U(a, b) of the cells of the query mask.")
flags.DEFINE_list("saliency_negative_ratio", ["0.4", "0.7"],
                  "Saliency: 'a,b': r ~ U(a, b) of the foreground cells masked in a hard negative.")
flags.DEFINE_float("saliency_fg_cap", None, "Saliency: cap of the foreground share of the query's masked cells "
                   "(default: 0.55 for highpass, none for blur/mean, as the authors' code).")
flags.DEFINE_float("saliency_focal_prob", None, "Saliency: probability of a focal query mask (default 0.2 highpass, "
                   "0 blur/mean).")
flags.DEFINE_float("saliency_spatial_prob", None, "Saliency: probability that a query grid mask is spatial, else "
                   "channel-independent (default 0.3 highpass, 1 blur/mean).")
flags.DEFINE_float("saliency_negative_fg_cap", None, "Saliency: the same cap for the hard negatives.")
flags.DEFINE_float("saliency_negative_focal_prob", None, "Saliency: probability of a focal hard negative (a square "
                   "of noise; default 0.2 highpass, 0 blur/mean).")
flags.DEFINE_float("saliency_negative_spatial_prob", None, "Saliency: spatial probability of the hard negatives' masks.")
flags.DEFINE_float("saliency_std_factor", 0.6, "Saliency: foreground cells: map value >= mean - factor * std.")
flags.DEFINE_float("saliency_alpha", 2.0, "Saliency: penalty ratio alpha of the hard negative's logit (the paper: 2).")
flags.DEFINE_integer("saliency_hard_negatives", 1, "Saliency: hard negatives per sample (0: off; needed for BYOL and "
                     "SimSiam, which have no negatives).")
flags.DEFINE_float("saliency_noise_std", 0.18, "Saliency, highpass fill: noise std of the query's masked pixels.")
flags.DEFINE_float("saliency_negative_noise_std", 0.14, "Saliency, highpass fill: noise std of the hard negatives.")
flags.DEFINE_string("saliency_model", "target", "Saliency: localisation network: 'target' (the target encoder's own "
                    "last feature map; no pretrained weights needed) [ours], 'resnet50_imagenet' (keras.applications "
                    "ResNet-50 with ImageNet weights, only if they are on disk), or a path to a .keras model "
                    "images -> feature map.")


def _pair_flag(name):
    """A list flag 'a,b' as (a, b) floats; raises UserError when malformed."""
    value = FLAGS[name].value
    if len(value) != 2:
        raise UserError(f"--{name} takes two numbers 'a,b', got {','.join(value)}")
    try:
        return tuple(float(v) for v in value)
    except ValueError as e:
        raise UserError(f"--{name}: {e}") from e


# Branch option -> the flag that sets it, by kind of branch (`option_values`). MixMask*'s
# `permutation` is not set from --permutation: it follows --same_permutation (random, or Un-Mix's
# reverse), as the flag's help says. MSCN's `ratio` and `grid_size` are not MixMask's --mask_ratio /
# --grid_size. The pairs ('a,b' list flags) are parsed by `_pair_flag`.
SALIENCY_FLAGS = dict(
    fill="saliency_fill", query_ratio="saliency_query_ratio", negative_ratio="saliency_negative_ratio",
    fg_cap="saliency_fg_cap", focal_prob="saliency_focal_prob", spatial_prob="saliency_spatial_prob",
    negative_fg_cap="saliency_negative_fg_cap", negative_focal_prob="saliency_negative_focal_prob",
    negative_spatial_prob="saliency_negative_spatial_prob", std_factor="saliency_std_factor",
    alpha="saliency_alpha", hard_negatives="saliency_hard_negatives", noise_std="saliency_noise_std",
    negative_noise_std="saliency_negative_noise_std", localisation="saliency_model", sigma="highpass_sigma",
    radius="highpass_radius")
MSCN_FLAGS = dict(
    ratio="mscn_ratio", key_ratio="mscn_key_ratio", grid_size="mscn_grid_size", noise_std="mscn_noise_std",
    focal_prob="mscn_focal_prob", focal_size="mscn_focal_size", channel_prob="mscn_channel_prob",
    mask_prob="mscn_mask_prob", key_mask_prob="mscn_key_mask_prob", extra_views="mscn_extra_views",
    sigma="highpass_sigma", radius="highpass_radius", high_pass="highpass")
MIXTURE_FLAGS = dict(
    grid_size="grid_size", mask_type="mask_type", ratio="mask_ratio", ratio_range="mask_ratio_range",
    per_sample="per_sample_mask", min_block_cells="min_block_cells", permutation="permutation",
    switch="switch_term", global_prob="unmix_prob", beta="unmix_beta", same_permutation="same_permutation",
    fill="erase_fill")
_PAIR_FLAGS = ("saliency_query_ratio", "saliency_negative_ratio", "mask_ratio_range")


def option_flags(branch):
    """Option -> flag name of the options of `branch` that flags set (every option of every branch)."""
    return {"saliency": SALIENCY_FLAGS, "mscn": MSCN_FLAGS}.get(branch, MIXTURE_FLAGS)


def validate():
    """Checks the branch flags that absl's types cannot, and the branch's options, before TensorFlow
    is imported (`mixmask_tf.checks.branch_options`: the checks the branch's constructor makes);
    raises UserError naming the flag. What needs the images (a grid larger than them) is checked
    when the branch meets the data."""
    from mixmask_tf import checks

    values = option_values()
    try:
        checks.branch_options(FLAGS.branch, values)
    except ValueError as e:
        message = str(e)
        named = [flag for option, flag in option_flags(FLAGS.branch).items()
                 if message.startswith((f"{option} ", f"{option},"))]
        raise UserError(f"{f'--{named[0]}: ' if named else ''}{message}") from e


def option_values():
    """Branch option -> the value its flag gives (every option of the --branch, by option name)."""
    values = {}
    for option, flag in option_flags(FLAGS.branch).items():
        if flag in _PAIR_FLAGS:
            values[option] = None if FLAGS[flag].value is None else _pair_flag(flag)
        else:
            values[option] = FLAGS[flag].value
    if FLAGS.branch == "mixmask_unmix":
        values["permutation"] = None
    return values


# Branch options that come from the data, not from a flag (the CLI passes them: `build_branch(mean=..., std=...)`).
DATA_OPTIONS = ("mean", "std")


def build_branch(**data_options):
    """The --branch with the options it takes (``branches.branch_options``), from their flags.

    An option no flag sets keeps the branch's default. `data_options` (e.g. the data's `mean` and
    `std`) are passed to branches that take them.
    """
    from mixmask_tf import branches

    values = {**option_values(), **data_options}
    return branches.build_branch(FLAGS.branch, **{name: values[name] for name in branches.branch_options(FLAGS.branch)
                                                  if name in values})
