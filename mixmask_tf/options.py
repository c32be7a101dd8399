"""Every branch option, declared once: name, default, help, check and command-line flag.

Pure Python (no TensorFlow): the command-line flags of every branch are generated from these
declarations (``trainers/flag_groups/branch.py``) and checked before TensorFlow is imported
(:func:`check`); the branch constructors run the same checks
(:func:`resolve`, or ``MaskOptions`` / ``mixing.validate_unmix_args``, which call the same
functions of :mod:`mixmask_tf.checks`), so the two cannot disagree. The constructors keep their
keyword defaults (readable signatures); ``tests/trainers/test_branch_options.py`` proves every
default here equals the constructor's.

A branch without options needs no entry. A new branch with options adds one tuple to
:data:`BRANCH_OPTIONS` under its registry name (docs/adding-a-branch.md).
"""

import dataclasses
import math
import os
from typing import Any, Callable, Optional, Tuple

from mixmask_tf import checks

__all__ = ["Option", "BRANCH_OPTIONS", "declared", "resolve", "check"]


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a branch.

    Attributes:
      name: the constructor's keyword.
      default: its default (the constructor's; a pair is a tuple of two floats).
      help: one line for ``--help``.
      check: ``check(name, value) -> value`` normalised, ValueError naming ``name``; None: any value.
      flag: the command-line flag that sets it (None: no flag; several branches may share a flag,
        with the same default).
      kind: the flag's type: "float", "int", "bool", "enum", "pair" ('a,b'), "string"; None: from
        the default's type.
      choices: an enum flag's values.
      when: ``when(values) -> bool``: check only then (e.g. a filter option of the filtering fill).
    """

    name: str
    default: Any
    help: str
    check: Optional[Callable[[str, Any], Any]] = None
    flag: Optional[str] = None
    kind: Optional[str] = None
    choices: Optional[Tuple[str, ...]] = None
    when: Optional[Callable[[dict], bool]] = None

    def flag_kind(self):
        if self.kind:
            return self.kind
        for kind, types in (("bool", bool), ("int", int), ("float", float), ("string", str), ("pair", tuple)):
            if isinstance(self.default, types):
                return kind
        raise ValueError(f"option {self.name!r}: say its flag's kind (default {self.default!r})")

    def validate(self, value, values):
        """The value checked and normalised (unchanged where there is no check or `when` says no)."""
        if self.check is None or (self.when is not None and not self.when(values)):
            return value
        return self.check(self.name, value)


def optional(check):
    """A check that lets None through (None: a default the branch resolves)."""
    return lambda name, value: None if value is None else check(name, value)


def _mask(field):
    def check(name, value):
        checks.mask_args(**{"grid_size": checks.DEFAULT_GRID_SIZE, field: value})
        return value
    return check


def _unmix(field):
    def check(name, value):
        checks.unmix_args(**{field: value})
        return value
    return check


def _sigma(name, value):
    checks.high_pass(value, 1)
    return float(value)


def _radius(name, value):
    checks.high_pass(1.0, value)
    return int(value)


def _localisation(name, value):
    if not (value in checks.SALIENCY_LOCALISATIONS or str(value).endswith(".keras")):
        raise ValueError(f"localisation must be {', '.join(map(repr, checks.SALIENCY_LOCALISATIONS))} or a path "
                         f"to a .keras model, got {value!r}")
    if str(value).endswith(".keras") and not os.path.isfile(value):
        raise ValueError(f"localisation model {value} does not exist")
    return str(value)


def _choice(choices):
    return lambda name, value: checks.choice(name, value, choices)


def _probability(name, value):
    return checks.probability(name, value)


def _unit_cap(name, value):
    return checks.interval(name, value, 0.0, 1.0, low_open=True)


def _ratio_below_one(name, value):
    return checks.interval(name, value, 0.0, 1.0, high_open=True)


# ---------------------------------------------------------------------------- grid masks (MixMask, erase, MixMask*)
MASK = (
    Option("grid_size", checks.DEFAULT_GRID_SIZE,
           "MixMask grid size G (2 CIFAR, 4 Tiny-ImageNet, 8 ImageNet in the paper).", _mask("grid_size"),
           flag="grid_size"),
    Option("mask_type", "blocked", "Mask pattern: BEiT-style blocks of grid cells, or each cell independently.",
           _mask("mask_type"), flag="mask_type", kind="enum", choices=checks.MASK_TYPES),
    Option("ratio", 0.5,
           "Mask ratio r in (0, 1) (the reference code's --mask_lam). Its direction depends on --mask_type, as in "
           "the reference code: blocked masks set floor(r * G^2) cells (at most) to keep the image's own pixels, "
           "so each image keeps lambda ~= r of itself; discrete masks keep each cell with probability 1 - r, so "
           "lambda ~= 1 - r. lambda (the measured fraction of the upsampled mask) weights the mix term, 1 - lambda "
           "the switch term; at 0.5 the two types agree, and r and 1 - r are equivalent under that loss.",
           _mask("ratio"), flag="mask_ratio"),
    Option("ratio_range", None, "Draw the ratio from U(a, b) per mask: 'a,b' (same direction as --mask_ratio).",
           _mask("ratio_range"), flag="mask_ratio_range", kind="pair"),
    Option("per_sample", False, "One mask and λ per image instead of per batch.", flag="per_sample_mask"),
    Option("min_block_cells", None, "Blocked masks: minimum block (default 4, or 1 at G=2).", flag="min_block_cells",
           kind="int"),
)
_PERMUTATION = Option("permutation", "reverse", "MixMask: which image fills the masked cells (MixMask* uses random "
                      "unless --same_permutation).", flag="permutation", kind="enum", choices=checks.PERMUTATIONS)
_SWITCH = Option("switch", True, "Keep the (1 - λ) switch term.", flag="switch_term")
_GLOBAL_PROB = Option("global_prob", 0.5, "Un-Mix: probability P of the global (Mixup) mixture, else region (CutMix).",
                      _unmix("global_prob"), flag="unmix_prob")
_BETA = Option("beta", 1.0, "Un-Mix: lambda ~ Beta(beta, beta).", _unmix("beta"), flag="unmix_beta")

MIXMASK = (_PERMUTATION, _SWITCH) + MASK
UNMIX = (_GLOBAL_PROB, _BETA, _PERMUTATION)
MIXMASK_UNMIX = (
    # Not --permutation: it follows --same_permutation (random, or Un-Mix's reverse).
    Option("permutation", None, "MixMask*: the MixMask part's permutation (None: random, or reverse with "
           "same_permutation).", kind="enum", choices=checks.PERMUTATIONS),
    _SWITCH, _GLOBAL_PROB, _BETA,
    Option("same_permutation", False, "MixMask*: use Un-Mix's reverse permutation for MixMask too (ablation).",
           flag="same_permutation"),
) + MASK
ERASE = (Option("fill", "zero", "Erase branch: fill of the erased cells.", flag="erase_fill", kind="enum",
                choices=checks.ERASE_FILLS),) + MASK

# ---------------------------------------------------------------------------- MSCN ([ours]: README "MSCN")
MSCN = (
    Option("ratio", 0.15, "MSCN: masked fraction of the grid cells of a query-side view's random grid mask (the "
           "paper's best for ResNet-50: 0.15; stable up to 0.5).", _ratio_below_one, flag="mscn_ratio"),
    Option("key_ratio", None, "MSCN: the same for the key-side views (view 2, 4, ...); default --mscn_ratio [ours].",
           optional(_ratio_below_one), flag="mscn_key_ratio", kind="float"),
    Option("grid_size", 7, "MSCN: G of the G x G random grid mask (7 = the paper's 32-px cells at 224 px).",
           checks.integer, flag="mscn_grid_size"),
    Option("noise_std", 0.18, "MSCN: std of the Gaussian noise filling masked pixels [ours: the saliency authors' "
           "value].", checks.positive, flag="mscn_noise_std"),
    Option("focal_prob", 0.4, "MSCN: probability of a focal mask (keep one square, mask the rest) instead of a grid "
           "mask (the paper's best: 0.4).", _probability, flag="mscn_focal_prob"),
    Option("focal_size", 0.9, "MSCN: side of the kept focal square as a fraction of the shorter image side [ours: "
           "200 px at 224, the saliency authors' value].",
           lambda name, value: checks.interval(name, value, 0.0, 1.0, low_open=True,
                                               what="a fraction of the shorter image side"),
           flag="mscn_focal_size"),
    Option("channel_prob", 0.7, "MSCN: probability that a grid mask is channel-independent (each colour channel its "
           "own cells) [ours: the paper says 'high'; the saliency authors use 0.7].", _probability,
           flag="mscn_channel_prob"),
    Option("mask_prob", 1.0, "MSCN: probability that a query-side view is masked at all [ours].", _probability,
           flag="mscn_mask_prob"),
    Option("key_mask_prob", None, "MSCN: the same for the key side; default --mscn_mask_prob [ours].",
           optional(_probability), flag="mscn_key_mask_prob", kind="float"),
    Option("extra_views", 2, "MSCN: extra masked full-resolution views, each its own augmentation (the paper: 2); "
           "the loss is averaged over every pair of views.",
           lambda name, value: checks.integer(name, value, minimum=0), flag="mscn_extra_views"),
    Option("sigma", None, "MSCN: sigma (pixels) of the high-pass input filter x - GaussianBlur(x); default "
           "5 * min(H, W) / 224 (the paper's 5 at 224 px, scaled) [ours: the scaling].", optional(_sigma),
           flag="highpass_sigma", kind="float"),
    Option("radius", None, "MSCN: kernel radius of the filter (2r + 1 taps); default ceil(3 sigma) [ours].",
           optional(_radius), flag="highpass_radius", kind="int"),
    Option("high_pass", True, "MSCN: apply the high-pass input filter (off only for ablations).",
           lambda name, value: bool(value),
           flag="highpass"),
)


# ---------------------------------------------------------------------------- saliency-guided masking
def _highpass_fill(values):
    return values.get("fill", "highpass") == "highpass"  # the other fills do not filter


SALIENCY = (
    Option("fill", "highpass", "Saliency: fill of masked cells: high-pass filter + noise, strong blur, or "
           "per-channel mean.", _choice(checks.SALIENCY_FILLS), flag="saliency_fill", kind="enum",
           choices=checks.SALIENCY_FILLS),
    Option("query_ratio", (0.05, 0.25), "Saliency: 'a,b': r ~ U(a, b) of the cells of the query mask.",
           checks.fraction_pair, flag="saliency_query_ratio", kind="pair"),
    Option("negative_ratio", (0.4, 0.7), "Saliency: 'a,b': r ~ U(a, b) of the foreground cells masked in a hard "
           "negative.", checks.fraction_pair, flag="saliency_negative_ratio", kind="pair"),
    Option("fg_cap", None, "Saliency: cap of the foreground share of the query's masked cells (default: 0.55 for "
           "highpass, none for blur/mean, as the authors' code).", optional(_unit_cap), flag="saliency_fg_cap",
           kind="float"),
    Option("focal_prob", None, "Saliency: probability of a focal query mask (default 0.2 highpass, 0 blur/mean).",
           optional(_probability), flag="saliency_focal_prob", kind="float"),
    Option("spatial_prob", None, "Saliency: probability that a query grid mask is spatial, else channel-independent "
           "(default 0.3 highpass, 1 blur/mean).", optional(_probability), flag="saliency_spatial_prob", kind="float"),
    Option("negative_fg_cap", None, "Saliency: the same cap for the hard negatives.", optional(_unit_cap),
           flag="saliency_negative_fg_cap", kind="float"),
    Option("negative_focal_prob", None, "Saliency: probability of a focal hard negative (a square of noise; default "
           "0.2 highpass, 0 blur/mean).", optional(_probability), flag="saliency_negative_focal_prob", kind="float"),
    Option("negative_spatial_prob", None, "Saliency: spatial probability of the hard negatives' masks.",
           optional(_probability), flag="saliency_negative_spatial_prob", kind="float"),
    Option("std_factor", 0.6, "Saliency: foreground cells: map value >= mean - factor * std.",
           lambda name, value: checks.interval(name, value, 0.0, math.inf, high_open=True,
                                               what="foreground: map >= mean - std_factor * std"),
           flag="saliency_std_factor"),
    Option("alpha", 2.0, "Saliency: penalty ratio alpha of the hard negative's logit (the paper: 2).",
           lambda name, value: checks.positive(name, value, what="the hard negatives' penalty ratio"),
           flag="saliency_alpha"),
    Option("hard_negatives", 1, "Saliency: hard negatives per sample (0: off; needed for BYOL and SimSiam, which "
           "have no negatives).", lambda name, value: checks.integer(name, value, minimum=0),
           flag="saliency_hard_negatives"),
    Option("noise_std", 0.18, "Saliency, highpass fill: noise std of the query's masked pixels.", checks.positive,
           flag="saliency_noise_std"),
    Option("negative_noise_std", 0.14, "Saliency, highpass fill: noise std of the hard negatives.", checks.positive,
           flag="saliency_negative_noise_std"),
    Option("localisation", "target", "Saliency: localisation network: 'target' (the target encoder's own last "
           "feature map; no pretrained weights needed) [ours], 'resnet50_imagenet' (keras.applications ResNet-50 "
           "with ImageNet weights, only if they are on disk), or a path to a .keras model images -> feature map.",
           _localisation, flag="saliency_model"),
    Option("mean", None, "The data's per-channel mean (only for resnet50_imagenet; the CLI passes the data's).",
           kind="pair"),
    Option("std", None, "The data's per-channel std (the same).", kind="pair"),
    Option("sigma", None, "Saliency, highpass fill: sigma of the high-pass filter (default: MSCN's).",
           optional(_sigma), flag="highpass_sigma", kind="float", when=_highpass_fill),
    Option("radius", None, "Saliency, highpass fill: kernel radius of the filter (default: MSCN's).",
           optional(_radius), flag="highpass_radius", kind="int", when=_highpass_fill),
)

# Branch name (``registry.BRANCHES``) -> its options, in the order of its constructor's keywords.
BRANCH_OPTIONS = {
    "none": (),
    "mixmask": MIXMASK,
    "unmix": UNMIX,
    "mixmask_unmix": MIXMASK_UNMIX,
    "erase": ERASE,
    "mscn": MSCN,
    "saliency": SALIENCY,
}


def declared(name):
    """The options of branch `name` (ValueError for an unknown branch); () for a branch with none."""
    from mixmask_tf import registry  # imports nothing either

    if name not in registry.BRANCHES:
        raise ValueError(f"unknown branch {name!r}; known: {', '.join(registry.BRANCHES)}")
    return BRANCH_OPTIONS.get(name, ())


def resolve(options, values):
    """The values of `options`, checked and normalised, in declaration order.

    Args:
      options: a tuple of :class:`Option`.
      values: option name -> value (other keys are ignored; a missing option takes its default).

    Raises:
      ValueError: naming the first invalid option.
    """
    values = {o.name: values.get(o.name, o.default) for o in options}
    return {o.name: o.validate(values[o.name], values) for o in options}


def check(name, values):
    """Checks the options of branch `name` as its constructor does (given values only; the defaults are valid)."""
    options = declared(name)
    given = {o.name: values[o.name] for o in options if o.name in values}
    full = {**{o.name: o.default for o in options}, **given}
    for option in options:
        if option.name in given:
            option.validate(given[option.name], full)
