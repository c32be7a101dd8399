"""Frozen encoders for evaluation, loaded from a run, a checkpoint, a `.keras` file or an export.

Every evaluator (kNN, linear probe, fine-tuning) sees the same thing: an `Encoder`, a callable
that takes raw pixels (uint8, or float in [0, 255]) [N, H, W, C] at its training resolution and
returns backbone features float32 [N, F] in inference mode. How the pixels are normalised is the
encoder's business: a Keras backbone normalises with the run's mean/std; an exported SavedModel
does it in its graph. So the same evaluation code measures a training run and the artefact that
is served, and the two can be compared number for number.

Features (`feature=`): "backbone" (default) is the pooled backbone output, what every evaluator and
the export use. "head" is the query encoder's output including its projection head, as the MoCo
CIFAR demo and Un-Mix's CIFAR code (whose kNN numbers the MixMask paper's CIFAR-100 / Tiny-ImageNet
MoCo numbers build on) score in their kNN monitor: see `head_model` for which head each framework
uses. A head lives in a run's training checkpoints only; an export or a `.keras` file has none.

Sources (`load_encoder`):
  * a pretraining `--model_dir`: its `backbone.keras` (the last completed epoch) and the
    normalisation in `config.json`; with `checkpoint=` a given `checkpoints/ckpt-<epoch>.npz`
    (the trainer is rebuilt from `config.json` and its weights restored);
  * an export base folder `<export_dir>` (newest version) or a version folder `<export_dir>/<n>`:
    the `serving_default` signature, exactly what TensorFlow Serving would run;
  * a `.keras` backbone file, with `mean` and `std` given.

Input filter (MSCN's high-pass, `mixmask_tf.ops.filters`): a run that trained on filtered images records
its filter in `config.json` (`"input_filter"`) and an export in its model card; its
`backbone.keras` stays the raw backbone. Every encoder of such a run applies the filter after
normalising (`Encoder.input_filter` says which), `trainable_backbone()` returns the backbone with the
filter in front (so a fine-tuned or saved classifier keeps it), and the random-init control keeps it.
"""

import json
import os
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from mixmask_tf import batchnorm  # noqa: F401  (registers the backbones' BatchNorm for load_model)
from mixmask_tf.ops import filters


class EncoderLoadError(ValueError):
    """The path is not something an encoder can be loaded from."""


# What an evaluator can score: the pooled backbone output, or the query encoder's head output.
FEATURES = ("backbone", "head")


def head_model(trainer):
    """The trainer's query-side encoder up to and including its projection head (a Keras model
    normalised images [N, H, W, C] -> [N, D], sharing the trainer's weights).

    * MoCo: `query_encoder` = backbone + the head whose L2-normalised output is the query q of the
      InfoNCE loss (the 128-d `encoder_q` output that the MoCo CIFAR demo's kNN monitor scores);
    * SimCLR, SimSiam: `encoder` = backbone + projector (z);
    * BYOL: `online_encoder` = backbone + projector (z), not the predictor: the predictor only
      predicts the target's projection, and the W-MSE code's "eval head" option, the nearest
      reference, also scores backbone + projector.

    Raises:
      ValueError: a trainer of another kind.
    """
    from mixmask_tf import models

    for cls, attribute in ((models.MoCo, "query_encoder"), (models.BYOL, "online_encoder"),
                           (models.SimSiam, "encoder"), (models.SimCLR, "encoder")):
        if isinstance(trainer, cls):
            return getattr(trainer, attribute)
    raise ValueError(f"no projection head known for a {type(trainer).__name__} trainer")


def _unfiltered_feature_model(trainer, feature):
    """`trainer.backbone` or `head_model(trainer)`, without the input filter."""
    if feature == "backbone":
        return trainer.backbone
    if feature == "head":
        return head_model(trainer)
    raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")


def feature_model(trainer, feature="backbone"):
    """The Keras model (normalised images -> features) that kNN scores for `feature`, with the
    trainer's input filter (`trainer.input_filter`, MSCN's high-pass) in front when it has one.

    Args:
      trainer: a `models.SiameseTrainer`.
      feature: "backbone" (`trainer.backbone`, pooled features [N, F]) or "head" (`head_model`,
        [N, D]; the kNN L2-normalises features, so the head output and the normalised embedding
        of the loss give the same cosine neighbours).

    Returns:
      the model itself without a filter; with one, a wrapper sharing its weights (the same
      wrapper object on every call for the same trainer, model and filter, so a per-epoch kNN
      monitor traces it once).

    Raises:
      ValueError: an unknown feature.
    """
    model = _unfiltered_feature_model(trainer, feature)
    input_filter = filters.from_config(getattr(trainer, "input_filter", None))
    if input_filter is None:
        return model
    # Cached outside Keras' attribute tracking (object.__setattr__), so the trainer's weights and
    # checkpoints are unchanged.
    cache = trainer.__dict__.get("_filtered_feature_models")
    if cache is None:
        cache = {}
        object.__setattr__(trainer, "_filtered_feature_models", cache)
    key = (feature, id(model), input_filter)
    if key not in cache:
        cache[key] = (model, filters.with_input_filter(model, input_filter))
    return cache[key][1]


class Encoder:
    """A frozen feature extractor over raw pixels.

    Attributes:
      image_shape: (H, W, C) the encoder expects.
      embedding_dim: F.
      mean, std: per-channel normalisation in [0, 1] pixel units (what training used).
      metadata: dict describing where it came from (framework, branch, dataset, path, ...,
        "input_filter").
      kind: "keras" or "saved_model".
      input_filter: the filter applied after normalisation (`filters.HighPassFilter.as_dict()`), or
        None.
    """

    def __init__(self, fn, image_shape, embedding_dim, mean, std, metadata=None, kind="keras",
                 backbone_loader=None, input_filter=None):
        self._fn = fn
        self.image_shape = tuple(int(d) for d in image_shape)
        self.embedding_dim = int(embedding_dim)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        input_filter = filters.from_config(input_filter)
        self.input_filter = input_filter.as_dict() if input_filter is not None else None
        self.metadata = {**(metadata or {}), "input_filter": self.input_filter}
        self.kind = kind
        self._backbone_loader = backbone_loader

    def __call__(self, images):
        """Features float32 [N, F] of raw pixels [N, H, W, C] (uint8 or float in [0, 255])."""
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"encoder expects images [N, {', '.join(map(str, self.image_shape))}], "
                             f"got {images.shape.as_list()}")
        return self._fn(images)

    def features(self, dataset, normalize=False):
        """Runs over a dataset of (pixels [B, H, W, C], labels [B]) batches.

        Args:
          dataset: tf.data.Dataset (e.g. `data.make_eval_dataset(source, None, B, raw_pixels)`).
          normalize: L2-normalise the features (for cosine kNN).

        Returns:
          (features float32 [N, F], labels int64 [N]) numpy arrays.
        """
        feats, labels = [], []
        for images, y in dataset:
            f = self(images)
            if normalize:
                f = tf.math.l2_normalize(f, axis=1)
            feats.append(f.numpy())
            labels.append(np.asarray(y))
        if not feats:
            return np.zeros((0, self.embedding_dim), np.float32), np.zeros((0,), np.int64)
        return np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64)

    def trainable_backbone(self):
        """A fresh Keras copy of the backbone (normalised float images -> features), for fine-tuning;
        with the encoder's input filter in front of it (a `filters.HighPassLayer`, saved with it)."""
        if self._backbone_loader is None:
            raise EncoderLoadError("this encoder has no Keras backbone to fine-tune")
        return self._backbone_loader()


def raw_pixels(image):
    """Eval `preprocess_fn` that keeps raw pixel values (float32 in [0, 255]): encoders normalise."""
    return tf.cast(image, tf.float32)


def _inner_filter(model):
    """The filter of a `filters.HighPassLayer` inside `model` (e.g. a `trainable_backbone()` copy
    saved by fine-tuning, or cloned by `random_init_like`), or None."""
    for layer in getattr(model, "layers", None) or []:
        if isinstance(layer, filters.HighPassLayer):
            return layer.filter
        found = _inner_filter(layer)
        if found is not None:
            return found
    return None


def attach_filter(model, input_filter=None, replace_inner=False):
    """`model` with its input filter in front: the one place an encoder's filter is attached.

    Args:
      model: a Keras model, normalised float images -> features.
      input_filter: a `filters.HighPassFilter`, its dict, or None: put in front of `model`
        (`filters.with_input_filter`). A model with a `HighPassLayer` inside already filters: its
        filter is the encoder's.
      replace_inner: False: a filter given for a model with one inside is an error; True: the inner
        one is kept and the given one ignored (a run's recorded filter for a model saved with it).

    Returns:
      (the model that filters, the filter as a `filters.HighPassFilter`, or None).

    Raises:
      ValueError: a filter given for a model that already has one inside (unless `replace_inner`).
    """
    input_filter = filters.from_config(input_filter)
    inner = _inner_filter(model)
    if inner is None:
        return filters.with_input_filter(model, input_filter), input_filter
    if input_filter is not None and not replace_inner:
        raise ValueError(f"{model.name} already applies the input filter {inner}; give it no input_filter")
    return model, inner


def from_keras(backbone, mean, std, metadata=None, input_filter=None):
    """Wraps a Keras model (normalised float images -> features: a backbone, or a backbone with its
    projection head, `feature_model`) as an Encoder.

    Args:
      backbone: the Keras model, without an input filter when `input_filter` is given.
      mean, std: per-channel normalisation in [0, 1] pixel units.
      metadata: dict recorded in `Encoder.metadata`.
      input_filter: a `filters.HighPassFilter`, its dict, or None: applied after normalising, in
        front of `backbone` (`attach_filter`). A model with a `HighPassLayer` inside already
        filters: its filter is reported as the encoder's.

    Raises:
      ValueError: `input_filter` given for a model that already has a filter inside.
    """
    return _keras_encoder(*attach_filter(backbone, input_filter), mean, std, metadata)


def _keras_encoder(model, input_filter, mean, std, metadata):
    """The Encoder of `model` (which filters already), normalising raw pixels with mean and std."""
    mean_t = tf.constant(np.asarray(mean, np.float32))
    std_t = tf.constant(np.asarray(std, np.float32))

    @tf.function(reduce_retracing=True)
    def fn(images):
        x = (tf.cast(images, tf.float32) / 255.0 - mean_t) / std_t
        return tf.cast(model(x, training=False), tf.float32)

    def copy():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone

    return Encoder(fn, model.input_shape[1:], model.output_shape[-1], mean, std,
                   {"source": "keras", **(metadata or {})}, kind="keras", backbone_loader=copy,
                   input_filter=input_filter)


def random_init_like(encoder, seed=0):
    """The same architecture freshly initialised (the honest control of a pretrained encoder),
    with the same input filter.

    Needs a Keras backbone (a run, a `.keras` file, or an export's assets.extra copy).
    """
    keras.utils.set_random_seed(int(seed))
    clone = keras.models.clone_model(encoder.trainable_backbone())  # clone_model re-initialises
    return from_keras(clone, encoder.mean, encoder.std, {**encoder.metadata, "control": "random_init",
                                                         "control_seed": int(seed)})


def raw_pixel_encoder(image_shape, mean, std):
    """Features = the normalised pixels themselves, flattened (the raw-pixel control).

    Returns:
      an Encoder [N, H, W, C] -> [N, H·W·C].
    """
    mean_t = tf.constant(np.asarray(mean, np.float32))
    std_t = tf.constant(np.asarray(std, np.float32))
    h, w, c = (int(d) for d in image_shape)

    @tf.function(reduce_retracing=True)
    def fn(images):
        x = (tf.cast(images, tf.float32) / 255.0 - mean_t) / std_t
        return tf.reshape(x, [-1, h * w * c])

    return Encoder(fn, image_shape, h * w * c, mean, std, {"control": "raw_pixels"}, kind="raw_pixels")


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def is_run_dir(path):
    return os.path.isfile(os.path.join(path, "config.json")) and os.path.isfile(os.path.join(path, "backbone.keras"))


def is_saved_model(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def newest_version(export_dir):
    """The newest complete version folder of an export base folder, or None."""
    if not os.path.isdir(export_dir):
        return None
    versions = sorted((int(d) for d in os.listdir(export_dir) if d.isdigit()
                       and is_saved_model(os.path.join(export_dir, d))), reverse=True)
    return os.path.join(export_dir, str(versions[0])) if versions else None


def rebuild_trainer(model_dir):
    """The run's trainer rebuilt from `config.json` and `backbone.keras` (weights not restored).

    The backbone architecture comes from the saved `.keras` file; heads, momentum copies and
    queues from the framework options recorded in `config.json`.
    """
    from mixmask_tf import models

    config = _read_json(os.path.join(model_dir, "config.json"))
    backbone = keras.models.load_model(os.path.join(model_dir, "backbone.keras"), compile=False)
    options = dict(config.get("framework_options", {}))
    if options.get("tau_schedule") == "cosine":
        options["total_steps"] = 1  # the schedule does not shape any weight
    # An online probe's weights are stored after every other variable (checkpoint.state_variables), so
    # the trainer without a probe matches the front of any checkpoint of its run.
    return models.build_trainer(config["framework"], backbone, branch=None, seed=int(config.get("seed", 0)),
                                **options)


def restore_trainer_from_checkpoint(model_dir, checkpoint_path):
    """The run's trainer (`rebuild_trainer`) with every weight of one training checkpoint
    (`ckpt-<step>` prefix, or a legacy `ckpt-<epoch>.npz`): backbone, heads, momentum copies, queue.

    Returns:
      (trainer, completed epochs, steps done in the next epoch).

    Raises:
      EncoderLoadError: the checkpoint does not match the run's architecture.
    """
    from mixmask_tf import checkpoint

    trainer = rebuild_trainer(model_dir)
    weights = list(trainer.weights)
    names = [checkpoint.normalized_name(v.path) for v in weights]
    saved, values, epoch, step = checkpoint.read_checkpoint(checkpoint_path)
    if saved[:len(names)] != names:
        raise EncoderLoadError(f"{checkpoint_path} does not match the architecture in {model_dir}/config.json")
    for v, value in zip(weights, values):
        if tuple(v.shape) != value.shape:
            raise EncoderLoadError(f"{checkpoint_path}: weight {v.path} has shape {value.shape}, "
                                   f"the run's architecture {tuple(v.shape)}")
        v.assign(value)
    return trainer, epoch, step


def restore_backbone_from_checkpoint(model_dir, checkpoint_path):
    """The backbone with the weights of one training checkpoint (`ckpt-<step>` prefix, or a
    legacy `ckpt-<epoch>.npz`); returns (backbone, completed epochs).

    Raises:
      EncoderLoadError: the checkpoint does not match the run's architecture.
    """
    trainer, epoch, _ = restore_trainer_from_checkpoint(model_dir, checkpoint_path)
    return trainer.backbone, epoch


def last_epoch_checkpoint(model_dir):
    """The path of the newest end-of-epoch training checkpoint of a run (progress step 0; a
    preemption checkpoint in the middle of an epoch is skipped): the epoch `backbone.keras` holds.

    Raises:
      EncoderLoadError: the run has no end-of-epoch checkpoint.
    """
    from mixmask_tf import checkpoint

    folder = os.path.join(model_dir, "checkpoints")
    for path in reversed(checkpoint.list_checkpoints(folder)):
        if checkpoint.is_legacy(path) or checkpoint.read_checkpoint(path)[3] == 0:
            return path
    raise EncoderLoadError(f"{model_dir} has no end-of-epoch training checkpoint in {folder}: the projection "
                           "head is saved there only")


def _checkpoint_exists(path):
    return tf.io.gfile.exists(path if path.endswith(".npz") else path + ".index")


def _from_run(model_dir, checkpoint_path=None, feature="backbone"):
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    config = _read_json(os.path.join(model_dir, "config.json"))
    results_path = os.path.join(model_dir, "results.json")
    results = _read_json(results_path) if os.path.exists(results_path) else {}
    metadata = {"source": "run", "path": os.path.abspath(model_dir), "framework": config.get("framework"),
                "branch": (config.get("branch") or {}).get("name") if isinstance(config.get("branch"), dict)
                else config.get("branch"), "dataset": config.get("dataset"), "backbone": config.get("backbone"),
                "num_classes": config.get("num_classes"), "epochs": results.get("epochs_completed"),
                "feature": feature}
    if config.get("imported"):  # a run folder written by trainers.import_checkpoint
        metadata["imported"] = {k: config["imported"].get(k) for k in ("source", "sha256", "key_prefix", "layout")}
    by_default = not checkpoint_path
    if checkpoint_path:
        if not _checkpoint_exists(checkpoint_path):
            candidate = os.path.join(model_dir, "checkpoints", checkpoint_path)
            if not _checkpoint_exists(candidate):
                raise EncoderLoadError(f"checkpoint {checkpoint_path} not found (nor in {model_dir}/checkpoints)")
            checkpoint_path = candidate
    elif feature == "head":
        # The head is in the training checkpoints only: the one of backbone.keras's epoch.
        checkpoint_path = last_epoch_checkpoint(model_dir)
    input_filter = config.get("input_filter")
    if not checkpoint_path:
        backbone = keras.models.load_model(os.path.join(model_dir, "backbone.keras"), compile=False)
        return from_keras(backbone, config["mean"], config["std"], metadata, input_filter)
    trainer, epoch, _ = restore_trainer_from_checkpoint(model_dir, checkpoint_path)
    if by_default:  # the last epoch is what backbone.keras holds: check that the checkpoint is that epoch
        saved = keras.models.load_model(os.path.join(model_dir, "backbone.keras"), compile=False)
        if not all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), trainer.backbone.get_weights())):
            raise EncoderLoadError(f"{model_dir}: the newest end-of-epoch checkpoint {checkpoint_path} does not "
                                   "hold the weights of backbone.keras; name the checkpoint to evaluate")
    metadata.update({"checkpoint": os.path.abspath(checkpoint_path), "epochs": epoch})
    return from_keras(_unfiltered_feature_model(trainer, feature), config["mean"], config["std"], metadata,
                      input_filter)


def _from_saved_model(path):
    card_path = os.path.join(path, "assets.extra", "export.json")
    card = _read_json(card_path) if os.path.exists(card_path) else {}
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise EncoderLoadError(f"{path} has no serving_default signature")
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]
    if len(spec) != 1:
        raise EncoderLoadError(f"{path}: serving_default takes {sorted(spec)}, expected one image input")
    (input_name, input_spec), = spec.items()
    output_name = "embedding" if "embedding" in signature.structured_outputs else next(iter(signature.structured_outputs))
    shape = card.get("image_shape") or card.get("input", {}).get("shape", [None])[1:]
    if not shape or any(d is None for d in shape):
        shape = input_spec.shape.as_list()[1:]
    if any(d is None for d in shape):
        raise EncoderLoadError(f"{path}: the model card does not record the training image shape")
    embedding_dim = card.get("embedding_dim") or signature.structured_outputs[output_name].shape[-1]
    normalization = card.get("normalization", {})
    # The serving graph filters already; the raw assets.extra/backbone.keras needs the card's filter.
    input_filter = filters.from_config(card.get("input_filter"))

    def fn(images):
        pixels = tf.cast(tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0, 255), input_spec.dtype)
        return tf.cast(signature(**{input_name: pixels})[output_name], tf.float32)

    def backbone():
        keras_path = os.path.join(path, "assets.extra", "backbone.keras")
        if not os.path.exists(keras_path):
            raise EncoderLoadError(f"{path} has no assets.extra/backbone.keras to fine-tune")
        return filters.with_input_filter(keras.models.load_model(keras_path, compile=False), input_filter)

    metadata = {"source": "saved_model", "path": os.path.abspath(path),
                **{k: card.get(k) for k in ("framework", "branch", "dataset", "backbone", "epochs", "knn_top1")},
                "feature": "backbone"}
    return Encoder(fn, shape, embedding_dim, normalization.get("mean", (0.0,) * shape[-1]),
                   normalization.get("std", (1.0,) * shape[-1]), metadata, kind="saved_model",
                   backbone_loader=backbone, input_filter=input_filter)


def load_encoder(path, checkpoint: Optional[str] = None, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, feature: str = "backbone") -> Encoder:
    """Loads an Encoder from a run folder, a checkpoint, an export or a `.keras` file.

    Args:
      path: a pretraining model_dir, an export base folder or version folder, or a `.keras` file.
      checkpoint: with a model_dir: a `ckpt-<step>` prefix or legacy `ckpt-<epoch>.npz`, a path or a
        name in `<model_dir>/checkpoints` (default: the last epoch's `backbone.keras`).
      mean, std: normalisation for a bare `.keras` file (ignored otherwise).
      feature: "backbone" (default) or "head" (`feature_model`): the query encoder's output with its
        projection head, restored from a run's training checkpoint (`checkpoint`, or by default the
        newest end-of-epoch one, checked to be the epoch of `backbone.keras`). The encoder's
        `metadata["feature"]` says which.

    Raises:
      EncoderLoadError: nothing loadable at `path`, or feature "head" of something without a head
        (an export, a `.keras` file).
      ValueError: an unknown feature.
    """
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    if not os.path.exists(path):
        raise EncoderLoadError(f"{path} does not exist")
    if feature == "head" and not is_run_dir(path):
        raise EncoderLoadError(f"{path} holds no projection head: the head output is available from the "
                               "model_dir of a pretraining run only (its training checkpoints); an export or "
                               "a .keras file holds the backbone alone")
    if path.endswith(".keras") and os.path.isfile(path):
        folder = os.path.dirname(os.path.abspath(path))
        config = _read_json(os.path.join(folder, "config.json")) if is_run_dir(folder) else {}
        if mean is None or std is None:
            if not config:
                raise EncoderLoadError(f"{path}: give the normalisation mean and std of its training data")
            mean, std = config["mean"], config["std"]
        backbone = keras.models.load_model(path, compile=False)
        # A .keras file in a run folder gets the run's input filter, unless it has one inside (a
        # fine-tuned classifier saved there).
        model, input_filter = attach_filter(backbone, config.get("input_filter"), replace_inner=True)
        return _keras_encoder(model, input_filter, mean, std, {"source": "keras", "path": os.path.abspath(path),
                                                               "feature": "backbone"})
    if is_run_dir(path):
        return _from_run(path, checkpoint, feature)
    if checkpoint:
        raise EncoderLoadError(f"--checkpoint needs the model_dir of a pretraining run; {path} is not one")
    if is_saved_model(path):
        return _from_saved_model(path)
    version = newest_version(path)
    if version is not None:
        return _from_saved_model(version)
    raise EncoderLoadError(f"{path} is neither a pretraining model_dir (config.json + backbone.keras), "
                           "an export folder (<n>/saved_model.pb) nor a .keras file")


def run_data_flags(model_dir):
    """The dataset flags a pretraining run used, read from its `flags.cfg` ({} if absent).

    Returns:
      dict flag name -> string value for dataset, data_dir, manual_dir, train_split, test_split,
      image_size, channels and eval_crop_ratio.
    """
    path = os.path.join(model_dir, "flags.cfg")
    wanted = {"dataset", "data_dir", "manual_dir", "train_split", "test_split", "image_size", "channels",
              "eval_crop_ratio"}
    found = {}
    if not os.path.exists(path):
        return found
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("--") and "=" in line:
                name, value = line[2:].split("=", 1)
                if name in wanted:
                    found[name] = value
    return found
