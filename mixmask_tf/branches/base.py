"""The branch contract: how a branch prepares the views a trainer encodes, and what extra query
batches it adds besides them.

A branch has two hooks, called by the trainer in this order on each replica's batch (with the
same seed):

1. ``prepare_views(views, seed)``: the V views of the batch as the pipeline gives them (view 1 =
   query, view 2 = key, then the branch's ``extra_views`` more) -> ``ViewsOutput``: the V views
   the framework scores (through the branch's input filter, then transformed: MSCN masks each
   view, the saliency branch the query view), stats, and hard negatives (``NegativeBatch``). The
   framework's clean loss is taken over every pair of the views (``SiameseTrainer.views_forward``:
   the mean over the V(V − 1)/2 pairs of the loss it gives two views). A branch that needs more
   views than two sets ``extra_views``; the data pipeline must then give
   [N, 2 + extra_views, H, W, C] batches (``augment.TwoViewAugment(extra_views=...)``).
2. ``__call__(images, seed)`` on the prepared query view: extra query batches with weighted
   terms, scored against the clean targets (below).

A branch may carry an input filter (``input_filter_for(image_shape)``: ``mixmask_tf.ops.filters``,
e.g. MSCN's high-pass filter): ``prepare_views`` applies it to every view before anything else,
and the trainer records it (``trainer.input_filter``) for wherever the encoder is used later
(the run's config.json, the evaluation commands and the export).

A branch knows masks and mixtures, never a framework. Its ``__call__`` turns the query view of a
(local) batch into extra query batches, each with one or more *terms*. A term says how to read the
batch's embeddings and how much each sample counts:

    loss_term = mean_i( weights[i] · L(embed(batch)[index[i]], target_i) )

where target_i is the framework's clean target of image i (MoCo: its key). Whether a term's
gradient also reaches the target is the framework's, not the branch's (MoCo, BYOL, SimSiam:
no, their targets are momentum / stop-gradient embeddings; SimCLR: yes, see
`mixmask_tf.models.simclr`). The MixMask
branch yields one mixed batch with two terms: "mix" (index = identity, weights = λ_i) and
"switch" (index = the switch indices, weights = 1 − λ of the switch mixture), so the switch
embeddings cost no second forward pass (docs/algorithms.md, "MixMask").

Every branch has static ``term_names`` and ``stat_names`` tuples equal to what ``__call__`` and
``prepare_views`` return together (the trainer creates its metrics from them), ``validate(image_shape)``
(checks only) and ``get_config()`` (which round-trips through ``build_branch(**config)``). Its
options are the named parameters of its ``__init__``, declared (default, help, check, flag) in
``mixmask_tf.options``; a branch that draws grid masks takes the mask options
(:class:`MaskOptions`) as ``**mask_options``, validated once into ``self.mask``.

The branches themselves are one file each beside this one; the names are the registry's
(``mixmask_tf.registry.BRANCHES``); docs/adding-a-branch.md adds one.
"""

import dataclasses
import inspect
from typing import NamedTuple, Optional, Tuple

import tensorflow as tf

from mixmask_tf import checks
from mixmask_tf.ops import masks as masks_lib
from mixmask_tf import registry

__all__ = ["Term", "QueryBatch", "BranchOutput", "NegativeBatch", "ViewsOutput", "Branch", "MaskOptions", "MASK_OPTIONS", "MaskedBranch",
           "image_hw", "mixture_terms", "branch_class", "branch_options", "build_branch",
           "concat_branch_outputs", "concat_views_outputs"]


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


class NegativeBatch(NamedTuple):
    """Extra negatives, one per sample: images [N, H, W, C] the framework encodes with its target
    (momentum) encoder; the similarity of image i's embedding with query i (view 1), times `scale`
    and divided by the temperature, joins query i's logits as one more negative. `name` names the
    stat `<name>_logit` (its mean logit)."""

    images: tf.Tensor
    scale: float
    name: str


class ViewsOutput(NamedTuple):
    """views: tuple of V float [N, H, W, C] (what the framework scores); stats: dict name -> scalar;
    negatives: tuple of NegativeBatch (only frameworks with negatives take them)."""

    views: tuple
    stats: dict
    negatives: tuple = ()


class Branch:
    """Base class and the ``none`` branch (the views filtered by its input filter, no extra query batches).

    Class attributes a branch may override: ``extra_views`` (views beyond the two it needs from
    the data pipeline) and ``uses_negatives`` (whether ``prepare_views`` returns NegativeBatches:
    known before the first step, so that a framework without negatives refuses the branch when
    it is built).
    """

    name = "none"
    term_names = ()
    stat_names = ()
    extra_views = 0
    uses_negatives = False

    @property
    def changes_views(self):
        """Whether the network may be given other views than the pipeline's two (a ``prepare_views`` of
        its own, or extra views): what `masks.png` then shows."""
        return self.extra_views > 0 or type(self).prepare_views is not Branch.prepare_views

    def input_filter_for(self, image_shape):
        """The filter (``filters.HighPassFilter``) the encoder sees every image through, for images of
        `image_shape` (H, W, C); None (the base branch): none. Pure: the trainer records it for
        evaluation and export, and the branch applies it in ``prepare_views``."""
        del image_shape
        return None

    def filter_views(self, views):
        """The views through ``input_filter_for`` of their (static) shape."""
        views = tuple(tf.convert_to_tensor(v) for v in views)
        input_filter = self.input_filter_for(tuple(views[0].shape[1:]))
        return views if input_filter is None else tuple(input_filter(v) for v in views)

    def prepare_views(self, views, seed):
        """The views the framework scores, made from the pipeline's views in one call.

        Args:
          views: tuple of V = 2 + ``extra_views`` float [N, H, W, C], normalised as the pipeline gives
            them (view 1 = query, view 2 = key).
          seed: [2] int stateless seed.

        Returns: ViewsOutput: the V views (filtered, then transformed), stats and hard negatives (the
        base branch: the filtered views, no stats, no negatives).
        """
        del seed
        return ViewsOutput(self.filter_views(views), {})

    def validate(self, image_shape):
        """Raises ValueError when the branch cannot work on images of `image_shape` (H, W, C); no other effect."""

    def display_maps(self, views):
        """Maps worth showing beside the views (masks.png, TensorBoard): {label: float [N, H, W, 1] in
        [0, 1]} for the views ``prepare_views`` takes; none by default."""
        del views
        return {}

    def bind(self, trainer):
        """Called once by the trainer when its encoders exist (before the first step); the base
        branch needs nothing from it. A branch may read generic trainer hooks here
        (`trainer.target_backbone()`), never a framework's internals."""
        del trainer

    def __call__(self, images, seed):
        """Args: images [N, H, W, C] float query view (as ``prepare_views`` returned it); seed [2] int
        stateless seed.

        Returns: BranchOutput.
        """
        del images, seed
        return BranchOutput(batches=(), stats={})

    def get_config(self):
        return {"name": self.name}


_is_int = checks.is_int


def image_hw(image_shape) -> Tuple[int, int]:
    """(H, W) of an image shape (H, W, C) with static positive H and W, else ValueError."""
    try:
        height, width, _ = image_shape
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape!r}.") from None
    if not (_is_int(height) and _is_int(width)) or height < 1 or width < 1:
        raise ValueError(f"the images need a static positive height and width, got {image_shape!r}.")
    return height, width


@dataclasses.dataclass(frozen=True)
class MaskOptions:
    """The grid-mask options every masked branch shares, validated once when built.

    Attributes:
      grid_size: G, the mask is a G×G grid upsampled to the image (nearest: pixel p of H
        takes cell floor(p·G/H), as the reference code's `F.interpolate(mode="nearest")`).
      mask_type: "blocked" (BEiT block-wise) or "discrete".
      ratio: constant mask ratio in (0, 1); ignored when `ratio_range` is given. Its direction
        depends on `mask_type` (as in the reference code): blocked masks keep λ ≈ ratio of each
        image's own pixels, discrete masks λ ≈ 1 − ratio (`mixmask_tf.ops.masks`).
      ratio_range: (a, b) to draw the ratio from U(a, b) per mask, or None.
      per_sample: False (default, as the reference code): one mask for the whole batch;
        True: each image its own mask and λ_i [ours].
      min_block_cells: minimum block size of the blocked generator; None = 4 except where a
        4-cell block cannot fit (G = 2: 1). Pass 4 to reproduce the reference generator exactly.

    Raises:
      ValueError: an invalid option (see ``masks.validate_mask_args``).
    """

    grid_size: int = checks.DEFAULT_GRID_SIZE
    mask_type: str = "blocked"
    ratio: float = 0.5
    ratio_range: Optional[Tuple[float, float]] = None
    per_sample: bool = False
    min_block_cells: Optional[int] = None

    def __post_init__(self):
        masks_lib.validate_mask_args(self.grid_size, self.ratio, self.ratio_range, self.mask_type)
        object.__setattr__(self, "grid_size", int(self.grid_size))
        object.__setattr__(self, "ratio", float(self.ratio))
        object.__setattr__(self, "ratio_range",
                           tuple(float(r) for r in self.ratio_range) if self.ratio_range else None)
        object.__setattr__(self, "per_sample", bool(self.per_sample))

    def check_image_size(self, image_size):
        """Raises ValueError unless `image_size` is (H, W), positive ints, and the grid fits in it.

        Only the image-size checks of ``masks.validate_mask_args`` (same messages); the other
        fields were validated when this value was built.
        """
        masks_lib.validate_mask_args(self.grid_size, image_size=image_size)

    def validate(self, image_shape):
        """Raises ValueError unless images of `image_shape` (H, W, C) are static and the grid fits."""
        self.check_image_size(image_hw(image_shape))

    def as_dict(self):
        """The options as keyword arguments (``masks.grid_masks`` / ``mixing.mixmask`` names)."""
        return dataclasses.asdict(self)


# The names of the mask options, as a masked branch accepts them.
MASK_OPTIONS = tuple(field.name for field in dataclasses.fields(MaskOptions))


class MaskedBranch(Branch):
    """Base of the branches that draw grid masks: ``self.mask`` is their :class:`MaskOptions`."""

    def __init__(self, **mask_options):
        self.mask = MaskOptions(**mask_options)

    def validate(self, image_shape):
        self.mask.validate(image_shape)

    def get_config(self):
        return {"name": self.name, **self.mask.as_dict()}


def mixture_terms(mixture, name, switch_name):
    """Terms of a `mixing.Mixture`: `name` (identity, λ) and, if `switch_name`, (switch_index, 1 − λ)."""
    n = tf.shape(mixture.images)[0]
    terms = [Term(name, tf.range(n, dtype=tf.int32), mixture.weights)]
    if switch_name:
        terms.append(Term(switch_name, tf.cast(mixture.switch_index, tf.int32), mixture.switch_weights))
    return tuple(terms)


def branch_class(name):
    """The branch class registered as `name` (ValueError naming the known branches otherwise)."""
    return registry.resolve(registry.BRANCHES, name, "branch")


def branch_options(name):
    """Names of the options branch `name` accepts, read from its ``__init__`` signature.

    A ``**mask_options`` parameter stands for the :data:`MASK_OPTIONS`.
    """
    options = []
    for param in inspect.signature(branch_class(name).__init__).parameters.values():
        if param.name == "mask_options" and param.kind is param.VAR_KEYWORD:
            options += MASK_OPTIONS
        elif param.name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            options.append(param.name)
    return tuple(options)


def build_branch(name, **options):
    """Builds a branch by name with its options (see each class).

    `build_branch(**branch.get_config())` rebuilds an equal branch.

    Raises:
      ValueError: an unknown name, or an option the branch does not take (the message names
        the ones it does).
    """
    allowed = branch_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"branch {name!r} takes no option {', '.join(map(repr, unknown))}; its options are: "
                         f"{', '.join(allowed) if allowed else '(none)'}")
    return branch_class(name)(**options)


def concat_views_outputs(outputs):
    """Concatenates ViewsOutputs computed on consecutive chunks of one batch (stats averaged):
    the single-device reference of a multi-replica ``prepare_views``, as :func:`concat_branch_outputs`."""
    views = tuple(tf.concat([o.views[v] for o in outputs], 0) for v in range(len(outputs[0].views)))
    stats = {k: tf.reduce_mean(tf.stack([o.stats[k] for o in outputs])) for k in outputs[0].stats}
    negatives = tuple(NegativeBatch(tf.concat([o.negatives[b].images for o in outputs], 0), neg.scale, neg.name)
                      for b, neg in enumerate(outputs[0].negatives))
    return ViewsOutput(views, stats, negatives)


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
