"""Masked Siamese ConvNets (Jing et al. 2022; docs/algorithms.md, "MSCN") as a branch.

No public implementation of MSCN exists; this one follows the paper, with the choices it leaves
open marked [ours]. What the branch does, on every framework:

* **High-pass input filter** (``input_filter_for``): `x − GaussianBlur(x, σ)` of every normalised
  view before anything else, and of every image the encoder sees later (kNN, linear probe,
  fine-tuning, serving: ``mixmask_tf.ops.filters``). σ defaults to 5 at 224 px, scaled with the
  image's shorter side (σ 0.625 at 28 px) [ours: the scaling rule and the kernel radius ceil(3σ)].
* **Masks on every view** (``prepare_views``), after the other augmentations and the filter,
  each image of each view its own draw (``ops.mscn_masks.mscn_masks``): with probability ``focal_prob``
  a focal mask (keep one random square of side ``focal_size`` × the shorter side, mask the
  rest), otherwise a random grid mask (``round(ratio · G²)`` of the G × G cells, fixed count
  [ours]) that is channel-independent (each colour channel its own cells) with probability
  ``channel_prob``. Masked pixels are filled with Gaussian noise of std ``noise_std``
  (``mixing.erase``; zero means "no information" after the high-pass filter).
* **Both branches masked, with their own strength**: views 1, 3, ... (the query side) use
  ``ratio`` and ``mask_prob``; views 2, 4, ... (the key side) ``key_ratio`` and
  ``key_mask_prob`` (default: the same) [ours: the per-side split].
* **Two extra full-resolution views** (``extra_views``), each from its own standard
  augmentation of the image (the data pipeline makes them: ``TwoViewAugment(extra_views=2)``);
  the framework's loss is the mean over every pair of the V = 4 views
  (``SiameseTrainer.views_forward``).

Defaults (paper, Figure 5): ratio 0.15 (best for ResNet-50), 32-px cells at 224 px = a 7 × 7 grid
(``grid_size`` 7, kept at every image size), focal probability 0.4. [ours] (the paper gives no
number): ``channel_prob`` 0.7, ``focal_size`` 0.9 of the shorter side and ``noise_std`` 0.18 (the
saliency authors' code, the only public MSCN-style masks: channel-independent p 0.7, 200-px
focal squares at 224, noise std 0.18), ``mask_prob`` 1 on both sides.

Stats: ``mask_ratio_query`` and ``mask_ratio_key``, the realised masked fraction of the pixels
(and channels) of the query-side and key-side views.
"""

import tensorflow as tf

from mixmask_tf import options as declared
from mixmask_tf.ops import filters
from mixmask_tf.ops import mixing
from mixmask_tf.ops import mscn_masks
from mixmask_tf import seeds
from mixmask_tf.branches.base import Branch, ViewsOutput, image_hw


class MSCNBranch(Branch):
    """MSCN: high-pass filter, noise-filled random grid / focal / channel-independent masks on
    every view, two extra masked views, the loss over every pair (see the module docstring).

    Args:
      ratio: masked fraction of the grid cells of a query-side grid mask, in [0, 1) (0.15).
      key_ratio: the same for the key-side views (None: ``ratio``).
      grid_size: G of the G × G grid (7: 32-px cells at 224 px).
      noise_std: std of the Gaussian noise that fills masked pixels (0.18) [ours].
      focal_prob: probability that a view gets a focal mask instead of a grid mask (0.4).
      focal_size: side of the kept focal square, as a fraction of the image's shorter side, in
        (0, 1] (0.9) [ours].
      channel_prob: probability that a grid mask is channel-independent (0.7) [ours].
      mask_prob: probability that a query-side view is masked at all (1.0) [ours].
      key_mask_prob: the same for the key side (None: ``mask_prob``) [ours].
      extra_views: extra masked full-resolution views (2, as the paper; 0 = two views only).
      sigma: σ of the high-pass filter in pixels (None: 5 · min(H, W) / 224) [ours].
      radius: kernel radius of the filter (None: ceil(3σ)) [ours].
      high_pass: apply the high-pass filter (True; False only for ablations: the masks then
        fill a normalised image whose zero is the mean colour, as erase-based masking).

    Raises:
      ValueError: an invalid option; ``validate`` also when the grid, the focal square or the
        filter cannot fit the images.
    """

    name = "mscn"
    term_names = ()
    stat_names = ("mask_ratio_query", "mask_ratio_key")

    def __init__(self, ratio=0.15, key_ratio=None, grid_size=7, noise_std=0.18, focal_prob=0.4, focal_size=0.9,
                 channel_prob=0.7, mask_prob=1.0, key_mask_prob=None, extra_views=2, sigma=None, radius=None,
                 high_pass=True):
        options = declared.resolve(declared.MSCN, locals())
        options["key_ratio"] = options["ratio"] if key_ratio is None else options["key_ratio"]
        options["key_mask_prob"] = options["mask_prob"] if key_mask_prob is None else options["key_mask_prob"]
        for name, value in options.items():
            setattr(self, name, value)

    def focal_pixels(self, height, width):
        """Side in pixels of the kept focal square: max(1, round(focal_size · min(H, W)))."""
        return max(1, int(round(self.focal_size * min(height, width))))

    def input_filter_for(self, image_shape):
        """The high-pass filter for images of `image_shape` (None with ``high_pass=False``)."""
        if not self.high_pass:
            return None
        return filters.HighPassFilter.for_images(image_hw(image_shape), self.sigma, self.radius)

    def validate(self, image_shape):
        """Checks the grid, the focal square and the filter fit the images."""
        height, width = image_hw(image_shape)
        channels = int(image_shape[2]) if image_shape[2] is not None else 1
        for view_index in (0, 1):
            ratio, mask_prob = self.side_options(view_index)
            mscn_masks.validate_mscn_args(height, width, channels, self.grid_size, ratio, self.focal_prob,
                                         self.focal_pixels(height, width), self.channel_prob, mask_prob)
        self.input_filter_for(image_shape)

    def side_options(self, view_index):
        """(ratio, mask_prob) of view `view_index` (0-based): even = query side, odd = key side."""
        return (self.ratio, self.mask_prob) if view_index % 2 == 0 else (self.key_ratio, self.key_mask_prob)

    def view_masks(self, seed, num, height, width, channels, view_index):
        """The masks of one view: float32 [num, H, W, C], 1 keeps a pixel (``ops.mscn_masks.mscn_masks``)."""
        ratio, mask_prob = self.side_options(view_index)
        return mscn_masks.mscn_masks(seed, num, height, width, channels, self.grid_size, ratio, self.focal_prob,
                                    self.focal_pixels(height, width), self.channel_prob, mask_prob)

    def prepare_views(self, views, seed):
        """The high-pass filter, then masks on every view (:meth:`mask_views`)."""
        return self.mask_views(self.filter_views(views), seed)

    def mask_views(self, views, seed):
        """Masks every view; see the module docstring.

        Args:
          views: tuple of V float [N, H, W, C] (as the network is given them: filtered).
          seed: [2] int stateless seed.

        Returns:
          ViewsOutput: V masked views [N, H, W, C]; stats mask_ratio_query / mask_ratio_key.
        """
        views = tuple(tf.convert_to_tensor(v) for v in views)
        _, height, width, channels = views[0].shape
        if height is None or width is None or channels is None:
            raise ValueError(f"MSCN needs views with a static height, width and channels, got {views[0].shape}")
        n = views[0].shape[0] if views[0].shape[0] is not None else tf.shape(views[0])[0]
        sub = seeds.split_canonical(seed, 2 * len(views))
        masked, ratios = [], ([], [])
        for v, view in enumerate(views):
            m = self.view_masks(sub[2 * v], n, height, width, channels, v)
            masked.append(mixing.erase(view, m, fill="noise", seed=sub[2 * v + 1], noise_std=self.noise_std))
            ratios[v % 2].append(mscn_masks.mscn_mask_stats(m)["mask_ratio"])
        stats = {"mask_ratio_query": tf.reduce_mean(tf.stack(ratios[0])),
                 "mask_ratio_key": tf.reduce_mean(tf.stack(ratios[1]))}
        return ViewsOutput(tuple(masked), stats)

    def get_config(self):
        return {"name": self.name, "ratio": self.ratio, "key_ratio": self.key_ratio, "grid_size": self.grid_size,
                "noise_std": self.noise_std, "focal_prob": self.focal_prob, "focal_size": self.focal_size,
                "channel_prob": self.channel_prob, "mask_prob": self.mask_prob, "key_mask_prob": self.key_mask_prob,
                "extra_views": self.extra_views, "sigma": self.sigma, "radius": self.radius,
                "high_pass": self.high_pass}
