"""The papers' PyTorch weights as this project's encoders: a checkpoint in, a run folder out.

:func:`read_source` reads a checkpoint (`mixmask_tf.torch_io`: no PyTorch, no code from the file)
and works out what it holds:

* MoCo-style `.pth.tar` (MoCo v1/v2, MixMask, Un-Mix): `state_dict` with the query encoder under
  `module.encoder_q.` (the key encoder under `module.encoder_k.`, the queue `module.queue` [D, K]);
  the projection head is `fc` (v1: Linear) or `fc.0`, `fc.2` (v2: Linear, ReLU, Linear);
* solo-learn's Lightning `.ckpt`: `state_dict` with `backbone.*` (its CIFAR ResNet-18: 3x3
  stride-1 `conv1` with padding 2, no max-pool, `fc` removed); the projector is not read (its layout
  depends on the method);
* a plain torchvision state dict (`fc` is then a classifier and is left out), or any of these as
  a `.safetensors` file.

The keys under the prefix must be exactly a torchvision ResNet-50 or the CIFAR ResNet-18
(`mixmask_tf.torch_resnet`): a missing, extra or mis-shaped key is an error naming the first one.
:func:`import_checkpoint` writes a run folder that every evaluator and the exporter accept (see its
docstring); :func:`build_encoder` gives the Keras models without writing anything.
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from mixmask_tf import torch_io, torch_resnet
from mixmask_tf.torch_io import CheckpointError

# Normalisation of the papers' pretraining when no dataset says otherwise ([0, 1] pixel units).
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
# Default input size per backbone.
_DEFAULT_SIZE = {"resnet50": 224, "resnet18_cifar": 32}


def default_crop_ratio(dataset):
    """The evaluation / serving centre-crop ratio of an imported run when none is given: 0.875
    (Resize(256) + CenterCrop(224)) for ImageNet and image folders, whose evaluation crops, else 1
    (in-memory datasets are never cropped, and the export then serves images as the evaluators see them)."""
    return 0.875 if dataset and (dataset.startswith("imagenet") or dataset == "folder") else 1.0
# MoCo's training hyper-parameters (only used if the imported run is trained further).
_MOCO_OPTIONS = {"v1": {"momentum": 0.999, "temperature": 0.07}, "v2": {"momentum": 0.999, "temperature": 0.2}}


@dataclasses.dataclass
class Source:
    """What a checkpoint holds (see :func:`read_source`).

    Attributes:
      path, sha256, file_format ("zip" or "safetensors").
      tensors: {key: array}, the state dict.
      prefix: the encoder's key prefix ("module.encoder_q.", "backbone.", "").
      backbone: "resnet50" or "resnet18_cifar".
      channels: input channels (conv1's).
      head: None or (version "v1"/"v2", hidden_dim, embedding_dim) of a MoCo head.
      entries: the checkpoint's plain top-level values (e.g. {"epoch": 200, "arch": "resnet50"}).
      layout: "moco", "solo-learn" or "torchvision" (from the prefix).
      stem_padding: the CIFAR ResNet-18's conv1 padding (None for resnet50).
    """

    path: str
    sha256: str
    file_format: str
    tensors: dict
    prefix: str
    backbone: str
    channels: int
    head: Optional[tuple]
    entries: dict
    layout: str
    stem_padding: Optional[int] = None


def _state_dict(content):
    """The state dict inside a checkpoint: its "state_dict" (MoCo, Lightning), "model", or itself."""
    if isinstance(content, dict):
        for key in ("state_dict", "model"):
            if isinstance(content.get(key), dict):
                return torch_io.flatten_tensors(content[key])
    return torch_io.flatten_tensors(content)


def _layout(prefix):
    if "encoder_q" in prefix or "encoder_k" in prefix:
        return "moco"
    return "solo-learn" if "backbone" in prefix else "torchvision"


def read_source(path, prefix="auto", backbone=None, stem_padding="auto"):
    """Reads and identifies a checkpoint.

    Args:
      path: a `.pth` / `.pth.tar` / `.ckpt` (PyTorch zip or legacy format) or `.safetensors` file.
      prefix: the encoder's key prefix, or "auto" (`torch_resnet.AUTO_PREFIXES`: MoCo's query
        encoder first; `module.encoder_k.` selects MoCo's key encoder).
      backbone: None, or the backbone the checkpoint must hold ("resnet50", "resnet18_cifar").
      stem_padding: the CIFAR ResNet-18's `conv1` padding, which a state dict does not record: "auto"
        (2 for the solo-learn layout, whose CIFAR stem is `Conv2d(3, 64, 3, 1, padding=2)`; else 1,
        as MoCo's CIFAR demo and torchvision-style code) or an int.

    Raises:
      FileNotFoundError, torch_io.UnsafeCheckpointError, CheckpointError (truncated, corrupt,
      unknown layout, wrong architecture).
    """
    content, file_format = torch_io.read_checkpoint(path)
    source = os.path.basename(path)
    tensors = _state_dict(content)
    if not tensors:
        raise CheckpointError(f"{source}: unknown layout: the file holds no tensors")
    prefix = torch_resnet.find_prefix(tensors, prefix, source)
    found = torch_resnet.detect_backbone(tensors, prefix, source)
    if backbone and backbone != found:
        raise CheckpointError(f"{source}: wrong architecture: the checkpoint holds a {found} (under {prefix!r}), "
                              f"not a {backbone}")
    channels = int(np.shape(tensors[f"{prefix}conv1.weight"])[1])
    layout = _layout(prefix)
    if found != "resnet18_cifar":
        if stem_padding not in ("auto", None):
            raise CheckpointError(f"{source}: a stem padding applies to resnet18_cifar only, the file holds a {found}")
        stem_padding = None
    elif stem_padding in ("auto", None):
        stem_padding = 2 if layout == "solo-learn" else 1
    return Source(path=os.path.abspath(path), sha256=torch_io.sha256(path), file_format=file_format, tensors=tensors,
                  prefix=prefix, backbone=found, channels=channels, head=torch_resnet.detect_head(tensors, prefix),
                  entries=torch_io.plain_values(content), layout=layout,
                  stem_padding=None if stem_padding is None else int(stem_padding))


def _load_encoder_weights(source, backbone, head, prefix):
    """Checks, then assigns, the backbone (and head) weights under `prefix`; checks for extra keys."""
    name = os.path.basename(source.path)
    entries = torch_resnet.backbone_entries(backbone, source.backbone)
    head_entries = torch_resnet.head_entries(head, source.head[0]) if head is not None else []
    ignored = torch_resnet.ignored_classifier(source.tensors, prefix, source.head)
    torch_resnet.check_no_extra(entries + head_entries, source.tensors, prefix, name,
                                allowed=[k[len(prefix):] for k in ignored])
    torch_resnet.assign_state(entries + head_entries, source.tensors, prefix, name)


def build_encoder(source, image_size=None):
    """The Keras backbone (and MoCo head) holding the checkpoint's weights.

    Args:
      source: a `Source`.
      image_size: the input side (default 224 for resnet50, 32 for resnet18_cifar).

    Returns:
      (backbone: keras.Model images [N, S, S, C] -> [N, F], head: keras.Model [N, F] -> [N, D] or None).

    Raises:
      CheckpointError: the first missing, extra or mis-shaped key.
    """
    from mixmask_tf import backbones
    from mixmask_tf.models import heads

    size = int(image_size or _DEFAULT_SIZE[source.backbone])
    options = {} if source.stem_padding is None else {"stem_padding": source.stem_padding}
    backbone = backbones.build_backbone(source.backbone, (size, size, source.channels), **options)
    torch_resnet.check_torch_batchnorm(backbone)
    head = None
    if source.head is not None:
        version, hidden, embedding = source.head
        head = heads.mlp_head(backbones.feature_dim(backbone), hidden, embedding,
                              num_layers=2 if version == "v2" else 1, batch_norm=False, name="head")
    _load_encoder_weights(source, backbone, head, source.prefix)
    return backbone, head


def _other_moco_side(source):
    """The key prefix of MoCo's other encoder (encoder_q <-> encoder_k) if the file holds it, else None."""
    swap = source.prefix.replace("encoder_q.", "\0").replace("encoder_k.", "encoder_q.").replace("\0", "encoder_k.")
    return swap if swap != source.prefix and f"{swap}conv1.weight" in source.tensors else None


def _moco_queue(source):
    """MoCo's queue [D, K] and pointer beside the encoders, as ([K, D], int), or None."""
    root = source.prefix.split("encoder_")[0]
    queue, ptr = source.tensors.get(f"{root}queue"), source.tensors.get(f"{root}queue_ptr")
    if queue is None or source.head is None or np.ndim(queue) != 2 or np.shape(queue)[0] != source.head[2]:
        return None
    return np.asarray(queue, np.float32).T, int(np.asarray(ptr).reshape(-1)[0]) if ptr is not None else 0


def _write_head_checkpoint(model_dir, source, backbone, head):
    """A training checkpoint of a MoCo trainer holding the imported encoders (the head lives there,
    as in a pretraining run); returns (framework, framework_options)."""
    import keras

    from mixmask_tf import checkpoint, models

    version, hidden, embedding = source.head
    queue = _moco_queue(source)
    options = {"embedding_dim": embedding, "hidden_dim": hidden, "queue_size": queue[0].shape[0] if queue else 4096,
               **_MOCO_OPTIONS[version]}
    framework = f"moco{version}"
    trainer = models.build_trainer(framework, backbone, **options)
    trainer.query_encoder.get_layer("head").set_weights(head.get_weights())
    key_backbone = trainer.key_encoder.get_layer(backbone.name)
    key_head = trainer.key_encoder.get_layer("head")
    other = _other_moco_side(source)
    if other is not None:  # MoCo's other encoder, checked like the imported one
        _load_encoder_weights(dataclasses.replace(source, prefix=other), key_backbone, key_head, other)
    else:
        key_backbone.set_weights(backbone.get_weights())
        key_head.set_weights(head.get_weights())
    if queue is not None:
        trainer.queue.assign(queue[0])
        trainer.queue_ptr.assign(queue[1] % queue[0].shape[0])
    trainer.compile(optimizer=keras.optimizers.SGD())
    checkpoint.TrainingCheckpoint(trainer, os.path.join(model_dir, "checkpoints"), keep=1).save(0)
    return framework, options


def import_checkpoint(path, model_dir, prefix="auto", backbone=None, image_size=None, mean=None, std=None,
                      dataset=None, eval_crop_ratio=None, stem_padding="auto"):
    """Imports a PyTorch checkpoint as a run folder that `knn_eval`, `linear_eval`, `finetune
    --encoder`, the exporters and `--feature=head` (with a MoCo head) accept.

    Writes to `model_dir` (which must hold no run yet): `backbone.keras`; `config.json`
    (backbone, image_shape, mean/std, the framework of a MoCo head, "imported": the card);
    `import.json`, the model card: the source file, its SHA-256, the key prefix, the layout and
    what was left out; `results.json` (no epochs: the source's own entries are in the card);
    `flags.cfg` with the data flags the evaluators default to; and, with a MoCo head, a training
    checkpoint `checkpoints/ckpt-0` of a MoCo trainer holding both encoders (the key encoder from
    the file when it has it, else a copy of the imported one) and the queue.

    Args:
      path: the checkpoint (see `read_source`).
      model_dir: the run folder to write.
      prefix, backbone, stem_padding: see `read_source`.
      image_size: input side (default 224 / 32).
      mean, std: per-channel normalisation in [0, 1] units (default: the dataset's known values,
        else ImageNet's for resnet50 and CIFAR-10's for resnet18_cifar).
      dataset: the dataset the evaluators default to (recorded in flags.cfg), or None.
      eval_crop_ratio: the evaluation and serving centre-crop ratio (default `default_crop_ratio(dataset)`);
        written to flags.cfg only when given (else the evaluators use their own default).

    Returns:
      the model card (dict).

    Raises:
      FileExistsError: model_dir already holds a run.
      ValueError: bad mean/std; CheckpointError / UnsafeCheckpointError / FileNotFoundError from the reading.
    """
    if os.path.exists(os.path.join(model_dir, "config.json")) or os.path.exists(os.path.join(model_dir, "backbone.keras")):
        raise FileExistsError(f"{model_dir} already holds a run; import into a new --model_dir")
    source = read_source(path, prefix, backbone, stem_padding)
    from mixmask_tf import checkpoint, data  # TensorFlow: only once the file is known to be good

    default_mean, default_std = data.KNOWN_STATS.get(dataset) or (
        IMAGENET_STATS if source.backbone == "resnet50" else CIFAR_STATS)
    mean = [float(v) for v in (mean if mean is not None else default_mean)]
    std = [float(v) for v in (std if std is not None else default_std)]
    if len(mean) != source.channels or len(std) != source.channels or min(std) <= 0:
        raise ValueError(f"mean and std need {source.channels} values (std > 0), got {mean} and {std}")
    crop = data.check_crop_ratio(eval_crop_ratio if eval_crop_ratio is not None else default_crop_ratio(dataset))
    encoder, head = build_encoder(source, image_size)
    image_shape = [int(d) for d in encoder.input_shape[1:]]
    other = _other_moco_side(source) if head is not None else None
    card = {"source": source.path, "sha256": source.sha256, "format": source.file_format, "layout": source.layout,
            "key_prefix": source.prefix, "backbone": source.backbone, "stem_padding": source.stem_padding,
            "head": None if head is None else {"framework": f"moco{source.head[0]}", "hidden_dim": source.head[1],
                                               "embedding_dim": source.head[2], "keys": f"{source.prefix}fc.*"},
            "key_encoder": other, "classifier_left_out": torch_resnet.ignored_classifier(source.tensors, source.prefix,
                                                                                         source.head),
            "tensors_in_file": len(source.tensors),
            "tensors_read": sum(1 for k in source.tensors if k.startswith(source.prefix) or (other and k.startswith(other))),
            "entries": source.entries, "image_shape": image_shape, "mean": mean, "std": std, "eval_crop_ratio": crop,
            "batchnorm": {"epsilon": 1e-5, "torch_momentum": 0.1, "keras_momentum": 0.9}}
    framework, options = None, {}
    if head is not None:
        framework, options = _write_head_checkpoint(model_dir, source, encoder, head)
    checkpoint.atomic_save_keras(encoder, os.path.join(model_dir, "backbone.keras"))
    config = {"framework": framework, "branch": None, "input_filter": None, "backbone": source.backbone,
              "framework_options": options, "dataset": dataset, "image_shape": image_shape, "num_classes": None,
              "mean": mean, "std": std, "eval_crop_ratio": crop, "seed": 0, "imported": card}
    checkpoint.atomic_write_text(os.path.join(model_dir, "import.json"), json.dumps(card, indent=2))
    flag_lines = [f"--image_size={image_shape[0]}", f"--channels={image_shape[2]}"]
    if eval_crop_ratio is not None:
        flag_lines.append(f"--eval_crop_ratio={crop}")
    if dataset:
        flag_lines.insert(0, f"--dataset={dataset}")
    checkpoint.atomic_write_text(os.path.join(model_dir, "flags.cfg"), "\n".join(flag_lines) + "\n")
    checkpoint.atomic_write_text(os.path.join(model_dir, "results.json"),
                                 json.dumps({"epochs_completed": None, "steps_completed": None, "imported": True}, indent=2))
    checkpoint.atomic_write_text(os.path.join(model_dir, "config.json"), json.dumps(config, indent=2))
    return card
