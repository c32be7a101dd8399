"""Pictures of what MixMask training does: mask montages and training curves (PNG).

Pure functions with explicit seeds. The arrays come from the library's own mask and mixture
code (:func:`mixmask_tf.ops.mixing.mixmask`, i.e. :func:`mixmask_tf.ops.masks.grid_masks` +
:func:`mixmask_tf.ops.masks.upsample_masks` + :func:`mixmask_tf.ops.mixing.mix_images`), so a montage
shows exactly what a training step with the same seed, grid size and ratio feeds the query
encoder.

Figures are drawn with ``matplotlib.figure.Figure`` on a ``FigureCanvasAgg`` (the Agg
backend, selected per figure): ``matplotlib.pyplot`` is never imported, so no global
backend or figure state is touched and the functions are safe in threads and in processes
without a display. Every PNG is written atomically: rendered to memory, written to a
temporary file in the destination folder and renamed into place (through ``tf.io.gfile``), so a
reader (or a crash) sees the previous file or the new one, never a half-written one.

Functions:

* :func:`montage_arrays`: the arrays of a MixMask-paper Figure 3 style montage (originals,
  blocked mask and mixture, discrete mask and mixture), as a dict of NumPy arrays.
* :func:`to_display`: normalised float images back to [0, 1] (``x * std + mean``, clipped).
* :func:`mask_montage`: those rows tiled into one RGB image ``[rows·H, K·W, 3]`` in [0, 1].
* :func:`save_mask_montage_png`: the montage with row labels (and λ) as a PNG.
* :func:`views_montage_arrays` / :func:`save_views_montage_png`: for a branch that changes the
  views (MSCN: high-pass filter, masks on every view, extra views), each view of a batch as the
  data pipeline gives it and as the network is given it (the branch's ``prepare_views``: its input filter,
  then its view changes, the code the train step runs).
* :func:`load_metrics_jsonl`: the rows of a ``metrics.jsonl`` (missing file: ``[]``).
* :func:`save_curves_png`: loss terms, kNN top-1 and λ against epoch as a PNG.
"""

import io
import json
import math
import numbers

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mixmask_tf import checkpoint
from mixmask_tf.ops import masks as masks_lib
from mixmask_tf.ops import mixing
from mixmask_tf import seeds

# Rows of the mask montage, top to bottom: (key of montage_arrays, label).
MONTAGE_ROWS = (
    ("images", "original"),
    ("blocked_masks", "blocked mask"),
    ("blocked_mixed", "blocked mixture"),
    ("discrete_masks", "discrete mask"),
    ("discrete_mixed", "discrete mixture"),
)


# ---------------------------------------------------------------------------------- helpers



def _channel_vector(values, channels, name):
    """float32 [C] from a scalar or a sequence of 1 or C numbers."""
    vec = np.asarray(values, np.float32).reshape(-1)
    if vec.size == 1:
        vec = np.repeat(vec, channels)
    if vec.size != channels:
        raise ValueError(f"{name} has {vec.size} values for images with {channels} channels.")
    return vec


def _prepare_images(images, num_examples):
    """First ``num_examples`` images as float32 [K, H, W, C] and whether the input was uint8.

    Accepts [N, H, W, C], [N, H, W] (one channel) or a two-view batch [N, 2, H, W, C]
    (its query view, index 0, is used), uint8 or float, with C = 1 or 3.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim == 5:
        images = images[:, 0]
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape [N, H, W, C], [N, H, W] or [N, 2, H, W, C], got {images.shape}.")
    if images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[-1]}.")
    if not (isinstance(num_examples, numbers.Integral) and num_examples >= 1):
        raise ValueError(f"num_examples must be a positive integer, got {num_examples!r}.")
    if images.shape[0] < 1:
        raise ValueError("images is an empty batch.")
    is_uint8 = images.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must be uint8 or float, got {images.dtype}.")
    images = images[:num_examples].astype(np.float32)
    return images, is_uint8


def to_display(x, mean=None, std=None):
    """Float images in [0, 1] for display: ``x * std + mean`` (per channel), clipped.

    Args:
      x: float array [..., C] (normalised images, or [0, 1] images when mean/std are None).
      mean, std: per-channel normalisation (scalar or C values); None: 0 and 1.

    Returns:
      float32 NumPy array of ``x``'s shape, in [0, 1].
    """
    x = np.asarray(x, np.float32)
    if mean is not None or std is not None:
        channels = x.shape[-1]
        mean = _channel_vector(0.0 if mean is None else mean, channels, "mean")
        std = _channel_vector(1.0 if std is None else std, channels, "std")
        x = x * std + mean
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _save_figure_png(fig, path):
    """Renders ``fig`` with Agg into memory, then writes it to ``path`` atomically."""
    canvas = FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    checkpoint.atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------- mask montage


def montage_arrays(images, seed, grid_size, ratio=0.5, num_examples=4, mean=None, std=None,
                   per_sample=False, min_block_cells=None):
    """The arrays of a mask montage (MixMask paper, Figure 3): masks and mixtures of a batch.

    The first ``K = min(num_examples, N)`` images are mixed among themselves with the
    library's :func:`mixmask_tf.ops.mixing.mixmask` (``permutation="reverse"``: image ``i`` is
    filled from image ``K - 1 - i``), once with blocked and once with discrete masks, both
    with the same ``seed`` (so each row is what a training step with that seed and mask
    type produces on these ``K`` images):
    ``mixed = M * x + (1 - M) * x[::-1]`` with ``M`` in {0, 1}.

    Float images are mixed as given (normalised, as in training) and then un-normalised
    for display with ``x * std + mean`` (when ``mean`` or ``std`` is given) and clipped to
    [0, 1]; because every mask value is 0 or 1, each displayed mixture pixel equals the
    displayed pixel of the image it was taken from, so the returned arrays satisfy
    ``blocked_mixed == blocked_masks * images + (1 - blocked_masks) * images[::-1]`` exactly
    (likewise for discrete). uint8 images are raw pixels: they are divided by 255 and
    ``mean`` / ``std`` must be None.

    Args:
      images: [N, H, W, C], [N, H, W] or a two-view batch [N, 2, H, W, C] (view 0, the
        query view, is used); uint8 or float; C = 1 or 3; 2 <= grid_size <= min(H, W).
      seed: Python int (seed ``[0, seed]``) or an integer pair / tensor [2].
      grid_size: Python int ``G``.
      ratio: mask ratio in (0, 1).
      num_examples: Python int ``K``, how many images of the batch to show.
      mean, std: per-channel normalisation (scalar or C values) of float images, or None.
      per_sample: False (the training default): one mask shared by the ``K`` images; True:
        a mask per image.
      min_block_cells: blocked masks only, as :func:`mixmask_tf.ops.masks.grid_masks`.

    Returns:
      dict of float32 NumPy arrays:
        "images": [K, H, W, C] display images in [0, 1];
        "blocked_masks", "discrete_masks": [K, H, W, 1] masks in {0, 1} (1 keeps the
          image's own pixel; a shared mask is repeated K times);
        "blocked_mixed", "discrete_mixed": [K, H, W, C] display mixtures in [0, 1];
        "blocked_lambda", "discrete_lambda": [K], λ (fraction of own pixels) per mixture.

    Raises:
      ValueError: bad shapes, dtypes, seed, mask arguments, or mean/std with uint8 images.
    """
    x, is_uint8 = _prepare_images(images, num_examples)
    if is_uint8:
        if mean is not None or std is not None:
            raise ValueError("uint8 images are raw pixels (divided by 255 for display); "
                             "mean/std apply to normalised float images only.")
        x = x / 255.0
    k, height, width = x.shape[0], x.shape[1], x.shape[2]
    masks_lib.validate_mask_args(grid_size, ratio, None, "blocked", image_size=(height, width))
    seed = seeds.as_seed(seed)
    out = {"images": to_display(x, mean, std)}
    for mask_type in masks_lib.MASK_TYPES:
        mixture = mixing.mixmask(tf.constant(x), seed, grid_size, mask_type=mask_type,
                                 ratio=ratio, per_sample=per_sample, permutation="reverse",
                                 min_block_cells=min_block_cells)
        m = np.broadcast_to(mixture.masks.numpy(), (k, height, width, 1))
        out[f"{mask_type}_masks"] = np.ascontiguousarray(m, np.float32)
        out[f"{mask_type}_mixed"] = to_display(mixture.images.numpy(), mean, std)
        out[f"{mask_type}_lambda"] = mixture.weights.numpy().astype(np.float32)
    return out


def _rgb(x):
    """[..., 1 or 3] -> [..., 3]."""
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def mask_montage(images, seed, grid_size, ratio=0.5, num_examples=4, mean=None, std=None,
                 per_sample=False, min_block_cells=None, pad=1):
    """The montage of :func:`montage_arrays` tiled into one RGB image.

    Rows (top to bottom, :data:`MONTAGE_ROWS`): originals, blocked masks (white = own
    pixels), blocked mixtures, discrete masks, discrete mixtures; column ``j`` is image
    ``j``. Tiles are separated by ``pad`` pixels of mid grey (0.5).

    Args:
      images, seed, grid_size, ratio, num_examples, mean, std, per_sample,
        min_block_cells: as :func:`montage_arrays`.
      pad: Python int >= 0, pixels between tiles.

    Returns:
      float32 NumPy array [5·H + 4·pad, K·W + (K - 1)·pad, 3] in [0, 1].
    """
    arrays = montage_arrays(images, seed, grid_size, ratio=ratio, num_examples=num_examples,
                            mean=mean, std=std, per_sample=per_sample,
                            min_block_cells=min_block_cells)
    return _tile_montage(arrays, pad)


def _tile_montage(arrays, pad):
    k, height, width = arrays["images"].shape[:3]
    rows = len(MONTAGE_ROWS)
    canvas = np.full((rows * height + (rows - 1) * pad, k * width + (k - 1) * pad, 3), 0.5,
                     np.float32)
    for r, (key, _) in enumerate(MONTAGE_ROWS):
        tiles = _rgb(arrays[key])
        for j in range(k):
            top, left = r * (height + pad), j * (width + pad)
            canvas[top:top + height, left:left + width] = tiles[j]
    return canvas


def _image_grid(fig, arrays, rows, k, fontsize):
    """Draws arrays[key][j] ([H, W, 1 or 3] in [0, 1]) for each (key, label) row and j < k, without
    ticks, the row's label on its first panel; returns the axes [rows][k]."""
    axes = fig.subplots(len(rows), k, squeeze=False)
    for r, (key, label) in enumerate(rows):
        for j in range(k):
            ax = axes[r][j]
            ax.imshow(_rgb(arrays[key][j]), vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=fontsize)
    return axes


def save_mask_montage_png(path, images, seed, grid_size, ratio=0.5, mean=None, std=None,
                          num_examples=4, per_sample=False, min_block_cells=None,
                          tile_inches=1.2, dpi=100):
    """Writes the mask montage with row labels and λ to ``path`` (PNG, atomically).

    A grid of ``5 x K`` panels (rows as :func:`mask_montage`, no interpolation), each
    mixture labelled with its λ. The figure is ``(K + 0.6) * tile_inches`` by
    ``5 * tile_inches + 0.4`` inches at ``dpi``, so the PNG is about
    ``round((5 * tile_inches + 0.4) * dpi)`` x ``round((K + 0.6) * tile_inches * dpi)``
    pixels (height x width).

    Args:
      path: destination file (its folder is created if needed).
      images, seed, grid_size, ratio, mean, std, num_examples, per_sample,
        min_block_cells: as :func:`montage_arrays`.
      tile_inches: Python float, size of one panel.
      dpi: Python int, pixels per inch.

    Returns:
      the dict of :func:`montage_arrays` (what was drawn).
    """
    arrays = montage_arrays(images, seed, grid_size, ratio=ratio, num_examples=num_examples,
                            mean=mean, std=std, per_sample=per_sample,
                            min_block_cells=min_block_cells)
    k = arrays["images"].shape[0]
    rows = len(MONTAGE_ROWS)
    fig = Figure(figsize=((k + 0.6) * tile_inches, rows * tile_inches + 0.4), dpi=dpi)
    fig.suptitle(f"MixMask masks: grid {grid_size}x{grid_size}, ratio {ratio:g}", fontsize=9)
    axes = _image_grid(fig, arrays, MONTAGE_ROWS, k, fontsize=7)
    for r, (key, _) in enumerate(MONTAGE_ROWS):
        if key.endswith("_mixed"):
            for j in range(k):
                lam = arrays[key.replace("_mixed", "_lambda")][j]
                axes[r][j].set_title(f"λ={lam:.2f}", fontsize=7, pad=2)
    fig.subplots_adjust(left=0.6 * tile_inches / fig.get_figwidth(), right=0.99, bottom=0.01,
                        top=1.0 - 0.35 / fig.get_figheight(), wspace=0.05, hspace=0.25)
    _save_figure_png(fig, path)
    return arrays


# ------------------------------------------------------------------- views of a view-changing branch


def network_display(x, mean=None, std=None, filtered=False):
    """Display images in [0, 1] of what the network is given.

    Unfiltered (normalised) images: :func:`to_display`. High-pass filtered images (zero = no
    information): ``0.5 + x · std`` per channel, clipped, so grey is zero and the pixel scale
    is that of the original image.
    """
    if not filtered:
        return to_display(x, mean, std)
    x = np.asarray(x, np.float32)
    std = _channel_vector(1.0 if std is None else std, x.shape[-1], "std")
    return np.clip(0.5 + x * std, 0.0, 1.0).astype(np.float32)


def transformed_displays(branch, views, out, mean=None, std=None, filtered=False):
    """Display images of what a branch's ``prepare_views`` made of ``views``.

    Args:
      branch: the ``branches.Branch`` (its ``display_maps``).
      views: the views ``prepare_views`` was given: a tuple of float [K, H, W, C].
      out: the ``branches.ViewsOutput`` it returned.
      mean, std, filtered: as :func:`network_display`.

    Returns:
      (networks, negatives, maps): [K, H, W, C] display images of each view as the network is given
      it and of each hard negative (lists, in order), and ``branch.display_maps(views)`` as
      {label: float32 [K, H, W, 1]}.
    """
    networks = [network_display(np.asarray(v), mean, std, filtered) for v in out.views]
    negatives = [network_display(np.asarray(n.images), mean, std, filtered) for n in out.negatives]
    maps = {label: np.asarray(value, np.float32) for label, value in branch.display_maps(views).items()}
    return networks, negatives, maps


def views_montage_arrays(views, branch, seed, num_examples=4, mean=None, std=None):
    """Every view of a batch before and after a branch's view changes.

    Args:
      views: float [N, V, H, W, C], a pretraining batch (normalised), V = 2 + branch.extra_views.
      branch: a ``branches.Branch`` (bound to its trainer where it reads one).
      seed: Python int (seed ``[0, seed]``) or an integer pair [2]: the seed of ``prepare_views``.
      num_examples: Python int K, images shown.
      mean, std: per-channel normalisation of ``views``.

    Returns:
      dict: "view<v>" [K, H, W, C] display images of view v (1-based) as the pipeline gives it,
      "network<v>" [K, H, W, C] as the network is given it (:func:`network_display`),
      "negative<h>" [K, H, W, C] the branch's hard negatives (if any), the branch's stats (floats)
      under "stats" and its `display_maps` ({label: [K, H, W, 1]}) under "maps".
    """
    views = np.asarray(views, np.float32)
    if views.ndim != 5 or views.shape[1] < 2:
        raise ValueError(f"views must be a pretraining batch [N, V, H, W, C] with V >= 2, got {views.shape}")
    x = views[:num_examples]
    inputs = tuple(tf.constant(x[:, v]) for v in range(x.shape[1]))
    filtered = branch.input_filter_for(x.shape[2:]) is not None
    out = branch.prepare_views(inputs, seeds.as_seed(seed))
    networks, negatives, maps = transformed_displays(branch, inputs, out, mean, std, filtered)
    arrays = {"stats": {k: float(v) for k, v in out.stats.items()}, "maps": maps}
    for v in range(x.shape[1]):
        arrays[f"view{v + 1}"] = to_display(x[:, v], mean, std)
        arrays[f"network{v + 1}"] = networks[v]
    for h, negative in enumerate(negatives):
        arrays[f"negative{h + 1}"] = negative
    return arrays


def save_views_montage_png(path, views, branch, seed, mean=None, std=None, num_examples=4, tile_inches=1.2,
                           dpi=100):
    """Writes :func:`views_montage_arrays` as a PNG (atomically): two rows per view, the view as
    augmented and the view the network is given; column j is image j. Returns the arrays."""
    arrays = views_montage_arrays(views, branch, seed, num_examples=num_examples, mean=mean, std=std)
    num_views = sum(1 for key in arrays if key.startswith("view"))
    k = arrays["view1"].shape[0]
    roles = {1: "query", 2: "key"}
    rows = []
    for v in range(1, num_views + 1):
        role = roles.get(v, "extra")
        label = f"foreground (view {v})"
        if label in arrays["maps"]:
            arrays[f"map{v}"] = arrays["maps"][label]
            rows.append((f"map{v}", label))
        rows += [(f"view{v}", f"view {v} ({role})"), (f"network{v}", f"view {v} → network")]
    rows += [(key, f"hard negative {key[8:]} → network") for key in sorted(arrays) if key.startswith("negative")]
    fig = Figure(figsize=((k + 0.8) * tile_inches, len(rows) * tile_inches + 0.5), dpi=dpi)
    stats = ", ".join(f"{name} {value:.2f}" for name, value in arrays["stats"].items())
    config = branch.get_config()
    input_filter = branch.input_filter_for(np.shape(views)[2:])
    title = f"{branch.name} views" + (f" (high-pass σ {input_filter.sigma:.3g})" if input_filter else "")
    if "ratio" in config:
        title += f", ratio {config['ratio']:g}"
    fig.suptitle(title + (f"; realised {stats}" if stats else ""), fontsize=8)
    _image_grid(fig, arrays, rows, k, fontsize=6)
    fig.subplots_adjust(left=0.8 * tile_inches / fig.get_figwidth(), right=0.99, bottom=0.01,
                        top=1.0 - 0.4 / fig.get_figheight(), wspace=0.05, hspace=0.2)
    _save_figure_png(fig, path)
    return arrays


# ---------------------------------------------------------------------------- training curves


def load_metrics_jsonl(path):
    """The rows of a ``metrics.jsonl`` (one JSON object per line), oldest first.

    A missing file gives ``[]``; blank lines and lines that are not a JSON object (e.g. a
    line half-written by a process that was killed) are skipped.

    Args:
      path: the ``metrics.jsonl`` file.

    Returns:
      list of dicts.
    """
    text = checkpoint.read_text(path)
    if text is None:
        return []
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _number(value):
    """float(value) for an int/float (NaN kept: it shows a divergence as a gap), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _series(records, key):
    """(epochs, values) of the records that hold a number under ``key``."""
    xs, ys = [], []
    for i, row in enumerate(records):
        y = _number(row.get(key))
        if y is None:
            continue
        x = _number(row.get("epoch"))
        xs.append(i + 1 if x is None or math.isnan(x) else x)
        ys.append(y)
    return xs, ys


def _loss_keys(records):
    """Keys starting with "loss" that hold a number somewhere: "loss" first, then sorted."""
    keys = {k for row in records for k, v in row.items()
            if k.startswith("loss") and _number(v) is not None}
    return sorted(keys, key=lambda k: (k != "loss", k))


def save_curves_png(path, records, title=None, width_inches=7.0, height_inches=6.0, dpi=100):
    """Plots training curves from ``metrics.jsonl`` rows and writes them to ``path`` (PNG).

    Top panel: every key starting with ``"loss"`` (``loss``, ``loss_clean``, ``loss_mix``,
    ...) against ``epoch``. Bottom panel: ``knn_top1`` (%, left axis) and every key starting
    with ``"lambda"`` (``lambda``, ``lambda_unmix``; right axis, [0, 1]) against ``epoch``.

    Missing data: a key is plotted at the epochs whose row holds a number for it (rows
    without it, or with a non-number, are skipped; NaN is kept and shows as a gap); a row
    without ``epoch`` uses its 1-based position. A panel with nothing to plot, and the
    whole figure for empty ``records``, still gets written, with the text "no data" in the
    empty panel(s): the file always reflects the current records, never a stale plot.

    Args:
      path: destination file (its folder is created if needed); written atomically.
      records: list of dicts, e.g. :func:`load_metrics_jsonl`.
      title: optional figure title.
      width_inches, height_inches, dpi: figure size; the PNG is
        ``round(height_inches * dpi)`` x ``round(width_inches * dpi)`` pixels.

    Returns:
      dict with the keys plotted: {"loss": [...], "monitor": [...]}.
    """
    records = [r for r in (records or []) if isinstance(r, dict)]
    fig = Figure(figsize=(width_inches, height_inches), dpi=dpi)
    if title:
        fig.suptitle(title, fontsize=10)
    ax_loss, ax_mon = fig.subplots(2, 1, sharex=True)
    plotted = {"loss": [], "monitor": []}

    for key in _loss_keys(records):
        xs, ys = _series(records, key)
        ax_loss.plot(xs, ys, marker="o", markersize=3, linewidth=1.8 if key == "loss" else 1.2,
                     label=key)
        plotted["loss"].append(key)
    ax_loss.set_ylabel("loss")
    ax_loss.grid(True, alpha=0.3)
    if plotted["loss"]:
        ax_loss.legend(fontsize=7, loc="best")
    else:
        ax_loss.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_loss.transAxes)

    handles = []
    xs, ys = _series(records, "knn_top1")
    if xs:
        handles += ax_mon.plot(xs, ys, marker="o", markersize=3, color="tab:green",
                               label="knn_top1")
        plotted["monitor"].append("knn_top1")
    ax_mon.set_ylabel("kNN top-1 (%)")
    lambda_keys = sorted({k for row in records for k, v in row.items()
                          if k.startswith("lambda") and _number(v) is not None})
    if lambda_keys:
        ax_lam = ax_mon.twinx()
        for key, style in zip(lambda_keys, ("--", ":", "-.", "-")):
            xs, ys = _series(records, key)
            handles += ax_lam.plot(xs, ys, linestyle=style, color="tab:purple", label=key)
            plotted["monitor"].append(key)
        ax_lam.set_ylim(0.0, 1.0)
        ax_lam.set_ylabel("λ")
    ax_mon.set_xlabel("epoch")
    ax_mon.grid(True, alpha=0.3)
    if handles:
        ax_mon.legend(handles=handles, fontsize=7, loc="best")
    else:
        ax_mon.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax_mon.transAxes)

    fig.tight_layout()
    _save_figure_png(fig, path)
    return plotted
