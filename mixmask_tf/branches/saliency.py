"""Saliency-guided masking with hard negatives (paper 004; docs/algorithms.md, "saliency-guided masking") as a branch.

What the branch does (the pure ops are `mixmask_tf.ops.saliency_masks`; the authors' code is
joycenerd/Saliency-Guided-Masking-for-ConvNets, MoCo v2 at 224 px):

* **Localisation** (``localisation``): a frozen network's last feature map of each view, summed
  over channels, thresholded at mean − 0.6·std into foreground cells. ``"target"`` (default,
  [ours]: needs no pretrained weights) is the trainer's target-side backbone up to its last
  spatial map (`backbones.feature_map_model(trainer.target_backbone())`: MoCo's momentum encoder,
  BYOL's EMA target, else the online backbone; it sees the views as the encoder does, filtered
  for the high-pass fill); a path to a ``.keras`` model (images -> feature map [N, g_h, g_w, K])
  is any localisation network, frozen, given the unfiltered normalised views (wrap your model's
  own preprocessing into it); ``"resnet50_imagenet"`` is the paper's choice, the supervised
  ``keras.applications.ResNet50`` without its head, built from its ImageNet weights **only when
  they are on disk** (Keras' cache, ``~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``;
  nothing is downloaded), given the un-normalised pixels through its own ``preprocess_input``
  (needs ``mean`` and ``std``, which the CLI passes). The map is computed at the network's own
  grid and cell (i, j) covers pixel rows floor(p·g_h/H) = i (the rule of `mixmask_tf.ops.saliency_masks`).
* **Query view masking** (view 1, ``prepare_views``): r ~ U(``query_ratio``) of the cells,
  split between foreground and background by the view's foreground share (capped at
  ``fg_cap``); with probability ``focal_prob`` a focal mask instead (keep a 200/224-side square,
  fill the rest); a grid mask is spatial with probability ``spatial_prob``, else
  channel-independent.
* **Fill** (``fill``): ``"highpass"`` (the MSCN high-pass filter as the branch's input filter,
  travelling with the encoder as MSCN's; masked pixels Gaussian noise of std ``noise_std``,
  ``negative_noise_std`` for the negatives), ``"blur"`` (masked cells take the image blurred
  with a Gaussian kernel 31, σ 10 at 224 px, scaled), ``"mean"`` (the image's per-channel mean).
* **Hard negatives** (``hard_negatives`` per sample, 1 in the paper; 0 turns them off): the key
  view with only foreground cells masked, r ~ U(``negative_ratio``) of them, encoded by the
  framework's target encoder; α·(q·n)/T joins query i's logits as one more negative
  (`branches.NegativeBatch`, scale ``alpha``). MoCo and SimCLR take them; BYOL and SimSiam have
  no negatives and refuse the branch unless ``hard_negatives=0`` (query masking only).

Per-fill defaults follow the authors' code: for ``"highpass"`` the query masks use focal p 0.2,
spatial p 0.3 and the 0.55 cap, and the negatives reuse the query's masking class (focal p 0.2
with a 130/224 square of noise, spatial p 0.3, the cap); for ``"blur"`` and ``"mean"`` both
masks are spatial grid masks without focal masks or cap. Pass the options to override.

Stats: ``mask_ratio`` (query), ``fg_ratio`` (query view's foreground share),
``negative_mask_ratio``, and ``hard_negative_logit`` (the mean α·q·n/T; from the trainer).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from mixmask_tf import backbones, checks
from mixmask_tf import options as declared
from mixmask_tf.ops import filters
from mixmask_tf.ops import masks as masks_lib
from mixmask_tf.ops import saliency_masks as sal
from mixmask_tf import seeds
from mixmask_tf.branches.base import Branch, NegativeBatch, ViewsOutput, image_hw

RESNET50_NOTOP = os.path.join("~", ".keras", "models", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
LOCALISATIONS = checks.SALIENCY_LOCALISATIONS

# The authors' per-strategy masking (hp.py / blur.py / mean.py): (focal_prob, spatial_prob, fg_cap) of
# the query and of the negative masks.
_STRATEGY_DEFAULTS = {
    "highpass": {"query": (0.2, 0.3, 0.55), "negative": (0.2, 0.3, 0.55)},
    "blur": {"query": (0.0, 1.0, None), "negative": (0.0, 1.0, None)},
    "mean": {"query": (0.0, 1.0, None), "negative": (0.0, 1.0, None)},
}


def resnet50_imagenet(image_shape, mean, std, weights=None):
    """keras.applications.ResNet50 without its head, ImageNet weights from a local file, behind its
    own preprocessing: normalised views [N, H, W, 3] -> x·std + mean -> 0..255 -> `preprocess_input`.

    Raises:
      ValueError: no local weights file, not 3 channels, or no mean/std.
    """
    path = os.path.expanduser(weights or RESNET50_NOTOP)
    if not os.path.isfile(path):
        raise ValueError(f"the ImageNet ResNet-50 weights are not on this machine ({path}); nothing is downloaded: "
                         "put the file there, pass a .keras localisation model, or use localisation='target' "
                         "(--saliency_model=target)")
    if int(image_shape[-1]) != 3 or mean is None or std is None:
        raise ValueError("the ImageNet ResNet-50 localisation needs 3-channel images and the data's mean and std")
    inputs = keras.Input(shape=tuple(image_shape))
    pixels = (inputs * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    net = keras.applications.ResNet50(include_top=False, weights=path, input_shape=tuple(image_shape))
    net.trainable = False
    return keras.Model(inputs, net(keras.applications.resnet50.preprocess_input(pixels), training=False),
                       name="resnet50_imagenet_localisation")


def _check_grid(output_shape, image_size):
    g_h, g_w = output_shape[1], output_shape[2]
    height, width = image_size
    if g_h is None or g_w is None or not (1 <= g_h <= height and 1 <= g_w <= width):
        raise ValueError(f"the localisation map is {g_h} x {g_w}; it must be a static grid no finer than the "
                         f"{height} x {width} images")


class SaliencyBranch(Branch):
    """Saliency-guided masking of the query view with hard negatives (see the module docstring).

    Args:
      fill: "highpass" (default), "blur" or "mean".
      query_ratio: (a, b): r ~ U(a, b) of the cells of a query grid mask ((0.05, 0.25)).
      negative_ratio: (a, b): r ~ U(a, b) of the foreground cells of a hard negative ((0.4, 0.7)).
      fg_cap, focal_prob, spatial_prob: the query masks' foreground cap (0.55), focal and spatial
        probabilities; None: the fill strategy's default (module docstring).
      negative_fg_cap, negative_focal_prob, negative_spatial_prob: the same for the negatives.
      std_factor: foreground threshold mean − std_factor·std (0.6).
      alpha: α, the hard negatives' penalty ratio (2, the paper's; the code's default is 1).
      hard_negatives: hard negatives per sample (1; 0: off).
      noise_std, negative_noise_std: the high-pass fill's noise (0.18, 0.14).
      localisation: "target" (default), "resnet50_imagenet", or a path to a .keras model.
      mean, std: the data's normalisation (only for "resnet50_imagenet").
      sigma, radius: the high-pass filter's (None: MSCN's defaults, `filters.HighPassFilter.for_images`).
    """

    name = "saliency"
    term_names = ()

    def __init__(self, fill="highpass", query_ratio=(0.05, 0.25), negative_ratio=(0.4, 0.7), fg_cap=None,
                 focal_prob=None, spatial_prob=None, negative_fg_cap=None, negative_focal_prob=None,
                 negative_spatial_prob=None, std_factor=0.6, alpha=2.0, hard_negatives=1, noise_std=0.18,
                 negative_noise_std=0.14, localisation="target", mean=None, std=None, sigma=None, radius=None):
        options = declared.resolve(declared.SALIENCY, locals())
        for name in ("fill", "query_ratio", "negative_ratio", "std_factor", "alpha", "hard_negatives", "noise_std",
                     "negative_noise_std", "localisation", "sigma", "radius"):
            setattr(self, name, options[name])
        defaults = _STRATEGY_DEFAULTS[fill]  # (focal_prob, spatial_prob, fg_cap) where not given
        self.query_masking, self.negative_masking = (
            tuple(d if options[f"{prefix}{n}"] is None else options[f"{prefix}{n}"]
                  for n, d in zip(("focal_prob", "spatial_prob", "fg_cap"), defaults[side]))
            for side, prefix in (("query", ""), ("negative", "negative_")))
        self.mean = None if mean is None else tuple(float(v) for v in np.asarray(mean).reshape(-1))
        self.std = None if std is None else tuple(float(v) for v in np.asarray(std).reshape(-1))
        self.uses_negatives = self.hard_negatives > 0
        self.stat_names = ("mask_ratio", "fg_ratio") + (
            ("negative_mask_ratio",) + tuple(f"{n}_logit" for n in self.negative_names()) if self.uses_negatives
            else ())
        self._feature_model = None  # the localisation network: `bind` (target) or `localisation_network`
        self._loaded = {}  # image shape -> the given localisation network, loaded once (validate, then bind)

    def negative_names(self):
        return tuple("hard_negative" if h == 0 else f"hard_negative{h + 1}" for h in range(self.hard_negatives))

    def input_filter_for(self, image_shape):
        """The high-pass filter of the "highpass" fill (None for the other fills)."""
        if self.fill != "highpass":
            return None
        return filters.HighPassFilter.for_images(image_hw(image_shape), self.sigma, self.radius)

    def validate(self, image_shape):
        """Checks the filter and a given localisation network (loaded to read its shapes, not kept) fit
        the images."""
        self.input_filter_for(image_shape)
        if self.localisation != "target":
            self._load_localisation(image_shape)

    def _load_localisation(self, image_shape):
        """A given localisation network (resnet50_imagenet or a .keras file), frozen and checked; loaded
        once per image shape (`validate` and `bind` share it)."""
        height, width = image_hw(image_shape)
        image_shape = (height, width, int(image_shape[2]))
        if image_shape not in self._loaded:
            self._loaded[image_shape] = self._build_localisation(image_shape)
        return self._loaded[image_shape]

    def _build_localisation(self, image_shape):
        height, width = image_shape[:2]
        if self.localisation == "resnet50_imagenet":
            model = resnet50_imagenet(image_shape, self.mean, self.std)
        else:
            model = keras.models.load_model(self.localisation, compile=False)
            model.trainable = False
            if tuple(model.input_shape[1:]) != image_shape or len(model.output_shape) != 4:
                raise ValueError(f"localisation model {self.localisation} maps {model.input_shape} to "
                                 f"{model.output_shape}; it must map images [N, {height}, {width}, "
                                 f"{image_shape[2]}] to a feature map [N, g_h, g_w, K]")
        _check_grid(model.output_shape, (height, width))
        return model

    def bind(self, trainer):
        """The localisation network: by default the trainer's target backbone up to its last spatial map;
        a given one is loaded here, for the trainer's images."""
        if self.localisation == "target":
            self._feature_model = backbones.feature_map_model(trainer.target_backbone())
            _check_grid(self._feature_model.output_shape, trainer.backbone.input_shape[1:3])
        else:
            self._feature_model = self._load_localisation(tuple(trainer.backbone.input_shape[1:]))

    def foreground(self, images):
        """Foreground cells [N, g_h, g_w] of views [N, H, W, C] (the localisation network's input)."""
        if self._feature_model is None:
            if self.localisation == "target":
                raise ValueError("the saliency branch has no localisation network yet: a trainer binds its target "
                                 "backbone (SiameseTrainer.compile)")
            self._feature_model = self._load_localisation(tuple(images.shape[1:]))  # first use without a trainer
        maps = tf.stop_gradient(self._feature_model(images, training=False))
        return sal.foreground_cells(sal.saliency_maps(maps), self.std_factor)

    def _localisation_inputs(self, x1, x2):
        filtered = self.filter_views((x1, x2))
        # The target encoder is trained on (and sees) filtered views; a given network the raw ones.
        return filtered, (filtered if self.localisation == "target" else (x1, x2))

    def display_maps(self, views):
        """The foreground cells of view 1 and view 2 at image resolution, float [N, H, W, 1] in {0, 1}."""
        x1, x2 = (tf.convert_to_tensor(v) for v in views[:2])
        _, local = self._localisation_inputs(x1, x2)
        height, width = x1.shape[1], x1.shape[2]
        return {f"foreground (view {v + 1})": masks_lib.upsample_masks(self.foreground(local[v]), height, width)
                for v in range(2)}

    def prepare_views(self, views, seed):
        """Filters the views, masks the query view (saliency-guided) and adds the hard negatives of the key view.

        Args:
          views: (x1, x2) float [N, H, W, C], normalised (not filtered: the localisation network given by
            a path reads the unfiltered views).
          seed: [2] int stateless seed.

        Returns:
          ViewsOutput: (masked filtered x1, filtered x2), stats, NegativeBatches (α).
        """
        x1, x2 = (tf.convert_to_tensor(v) for v in views[:2])
        _, height, width, channels = x1.shape
        filtered, local = self._localisation_inputs(x1, x2)
        sub = seeds.split_canonical(seed, 2 + 2 * self.hard_negatives)
        fg_query = self.foreground(local[0])
        focal, spatial, cap = self.query_masking
        masks, stats = sal.query_masks(sub[0], fg_query, height, width, channels, self.query_ratio, cap, focal,
                                       spatial)
        query = sal.fill(filtered[0], masks, self.fill, seed=sub[1], noise_std=self.noise_std)
        negatives, ratios = [], []
        if self.hard_negatives:
            fg_key = self.foreground(local[1])
            focal, spatial, cap = self.negative_masking
            for h, name in enumerate(self.negative_names()):
                neg_masks, neg_stats = sal.negative_masks(sub[2 + 2 * h], fg_key, height, width, channels,
                                                          self.negative_ratio, focal, spatial_prob=spatial, fg_cap=cap)
                images = sal.fill(filtered[1], neg_masks, self.fill, seed=sub[3 + 2 * h],
                                  noise_std=self.negative_noise_std)
                negatives.append(NegativeBatch(images, self.alpha, name))
                ratios.append(neg_stats["negative_mask_ratio"])
            stats["negative_mask_ratio"] = tf.reduce_mean(tf.stack(ratios))
        return ViewsOutput((query, filtered[1]) + tuple(filtered[2:]), stats, tuple(negatives))

    def get_config(self):
        focal, spatial, cap = self.query_masking
        n_focal, n_spatial, n_cap = self.negative_masking
        return {"name": self.name, "fill": self.fill, "query_ratio": self.query_ratio,
                "negative_ratio": self.negative_ratio, "fg_cap": cap, "focal_prob": focal, "spatial_prob": spatial,
                "negative_fg_cap": n_cap, "negative_focal_prob": n_focal, "negative_spatial_prob": n_spatial,
                "std_factor": self.std_factor, "alpha": self.alpha, "hard_negatives": self.hard_negatives,
                "noise_std": self.noise_std, "negative_noise_std": self.negative_noise_std,
                "localisation": self.localisation, "mean": self.mean, "std": self.std, "sigma": self.sigma,
                "radius": self.radius}
