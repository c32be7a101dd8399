r"""Exports an encoder's weights for PyTorch: torchvision key names in a `.safetensors` file, or
Detectron2's `.pkl`.

    python -m export.torch_weights --encoder=/tmp/run --out=/tmp/run/resnet50.safetensors
    python -m export.torch_weights --encoder=/tmp/run --out=/tmp/run/r50.pkl --format=detectron2

`--encoder` is a pretraining or imported run folder (its `backbone.keras`), an export folder or
version (its `assets.extra/backbone.keras`) or a `.keras` backbone file; the backbone must be this
project's `resnet50` or `resnet18_cifar` (the torchvision layouts, `mixmask_tf.torch_resnet`).

* `--format=torchvision` (default): a `.safetensors` file (the `safetensors` package, no pickle)
  with torchvision's keys (`conv1.weight`, `bn1.running_var`, `layer1.0.downsample.0.weight`, ...,
  `num_batches_tracked` 0) and, with `--fc=zeros` (default), torchvision's 1000-way `fc` as zeros
  (no classifier was trained; it is there so that the stock model loads the file strictly):
  `m = torchvision.models.resnet50(); m.load_state_dict(safetensors.torch.load_file(path));
  m.fc = torch.nn.Identity()` computes the encoder's features (`--fc=none` leaves `fc` out, for a
  model whose `fc` is already `Identity()`) (CIFAR ResNet-18:
  `resnet18()` with `conv1 = Conv2d(3, 64, 3, 1, p, bias=False)`, `maxpool = Identity()`, p the
  header's `conv1_padding`: 1, or 2 for a solo-learn import). With
  `--head` (a run with a MoCo head) MoCo's head is added as `fc.0`, `fc.2` (v2) or `fc` (v1): the
  model of MoCo's `encoder_q`. The header metadata records the normalisation (mean, std) and input
  shape, which the PyTorch side must apply itself.
* `--format=detectron2`: the backbone renamed as MoCo's `convert-pretrain-to-detectron2.py` does
  (`stem.conv1`, `res2.0.conv1.norm`, `res3.0.shortcut`, ...), pickled as
  {"model": {name: array}, "__author__": "mixmask-tf", "matching_heuristics": True}, the file
  Detectron2's `MODEL.WEIGHTS` reads (docs/pytorch.md: the configuration to use).

An encoder that applies an input filter (MSCN's high-pass) is refused: torchvision's ResNet has none.
Errors are one line on stderr, exit status 2.
"""

import json
import os
import pickle
import sys

import numpy as np

if __name__ == "__main__" or os.path.basename(sys.argv[0] if sys.argv else "") == "mixmask-export-safetensors":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FORMATS = ("torchvision", "detectron2")


def _keras_source(path):
    """(backbone .keras path, metadata dict, run folder or None) of an --encoder path."""
    from mixmask_tf import encoders

    if path.endswith(".keras") and os.path.isfile(path):
        return path, {}, None
    if encoders.is_run_dir(path):
        with open(os.path.join(path, "config.json")) as f:
            return os.path.join(path, "backbone.keras"), json.load(f), path
    version = path if encoders.is_saved_model(path) else encoders.newest_version(path)
    if version is not None:
        card_path = os.path.join(version, "assets.extra", "export.json")
        card = json.load(open(card_path)) if os.path.exists(card_path) else {}
        keras_path = os.path.join(version, "assets.extra", "backbone.keras")
        if not os.path.exists(keras_path):
            raise ValueError(f"{version} has no assets.extra/backbone.keras")
        return keras_path, card, None
    raise ValueError(f"{path} is neither a run folder (config.json + backbone.keras), an export folder nor a "
                     ".keras file")


def torchvision_name(backbone):
    """"resnet50" or "resnet18_cifar": which torchvision layout a Keras backbone has.

    Raises:
      ValueError: another architecture, or a CIFAR ResNet-18 saved before it padded as PyTorch does.
    """
    from mixmask_tf import torch_resnet

    for name in torch_resnet.BACKBONES:
        try:
            torch_resnet.backbone_entries(backbone, name)
        except ValueError:
            continue
        torch_resnet.check_torch_batchnorm(backbone)
        stale = [l.name for l in backbone.layers if type(l).__name__ == "Conv2D" and l.strides != (1, 1)
                 and l.kernel_size != (1, 1) and l.padding == "same"]
        if stale:
            raise ValueError(f"{stale[0]} pads a stride-2 conv bottom/right only (a {name} saved before it padded as "
                             "PyTorch does): torchvision's model would compute other features")
        return name
    raise ValueError(f"the backbone {backbone.name!r} is not one of the torchvision layouts "
                     f"({', '.join(torch_resnet.BACKBONES)}); only those have torchvision names")


def _stem_padding(backbone, name):
    """The padding of torchvision's `conv1` that the backbone computes (3 for resnet50; the CIFAR
    ResNet-18's: 1, or its `stem_pad` layer's, e.g. 2 for a solo-learn import)."""
    if name == "resnet50":
        return 3
    pads = [l for l in backbone.layers if l.name == "stem_pad"]
    return int(pads[0].padding[0][0]) if pads else 1


def _moco_head(run_dir):
    """(head model, version) of a run's MoCo trainer, from its newest end-of-epoch checkpoint."""
    from mixmask_tf import encoders, models

    trainer, _, _ = encoders.restore_trainer_from_checkpoint(run_dir, encoders.last_epoch_checkpoint(run_dir))
    if not isinstance(trainer, models.MoCo):
        raise ValueError(f"--head: {run_dir} trained {type(trainer).__name__}, whose projector has no torchvision "
                         "(MoCo) layout; only a MoCo head is exported")
    return trainer.query_encoder.get_layer("head"), trainer.version


def detectron2_names(state):
    """{Detectron2 name: array} of a torchvision ResNet state dict (MoCo's
    convert-pretrain-to-detectron2.py renaming; `fc` and `num_batches_tracked` dropped)."""
    renamed = {}
    for key, value in state.items():
        if key.startswith("fc") or key.endswith("num_batches_tracked"):
            continue
        new = key if "layer" in key else "stem." + key
        for t in (1, 2, 3, 4):
            new = new.replace(f"layer{t}", f"res{t + 1}")
        for t in (1, 2, 3):
            new = new.replace(f"bn{t}", f"conv{t}.norm")
        new = new.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        renamed[new] = value
    return renamed


FC_CHOICES = ("zeros", "none")


def export_weights(encoder_path, out, fmt="torchvision", head=False, fc="zeros"):
    """Writes the encoder's weights for PyTorch (see the module docstring); returns a summary dict.

    Args:
      encoder_path: a run folder, an export folder or version, or a `.keras` backbone.
      out: the file to write.
      fmt: "torchvision" (.safetensors) or "detectron2" (.pkl).
      head: add the run's MoCo head as `fc` (MoCo's encoder_q).
      fc: without a head, "zeros" (torchvision's 1000-way `fc`, zero: the stock model loads the file
        strictly) or "none" (no `fc` keys).

    Raises:
      ValueError: not a torchvision-layout backbone, an input filter, --head without a MoCo head, an
        unknown format or fc choice.
    """
    import keras

    from mixmask_tf import checkpoint, torch_io, torch_resnet

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fc not in FC_CHOICES:
        raise ValueError(f"unknown fc choice {fc!r}; choose one of {', '.join(FC_CHOICES)}")
    keras_path, meta, run_dir = _keras_source(encoder_path)
    if meta.get("input_filter"):
        raise ValueError(f"{encoder_path} applies an input filter ({meta['input_filter']}) that torchvision's ResNet "
                         "does not: its weights alone would compute other features")
    backbone = keras.models.load_model(keras_path, compile=False)
    name = torchvision_name(backbone)
    head_model = version = None
    if head:
        if run_dir is None or fmt != "torchvision":
            raise ValueError("--head needs --format=torchvision and a run folder (the head lives in its training "
                             "checkpoint)")
        head_model, version = _moco_head(run_dir)
    state = torch_resnet.state_dict(backbone, name, head_model, version)
    if head_model is None and fc == "zeros":
        features = int(backbone.output_shape[-1])
        state.update({"fc.weight": np.zeros((1000, features), np.float32), "fc.bias": np.zeros((1000,), np.float32)})
    norm = meta.get("normalization") or {}
    metadata = {"format": "pt", "producer": "mixmask-tf export.torch_weights", "backbone": name,
                "source": os.path.abspath(encoder_path), "image_shape": list(backbone.input_shape[1:]),
                "mean": meta.get("mean", norm.get("mean")), "std": meta.get("std", norm.get("std")),
                "head": f"moco{version}" if version else None, "conv1_padding": _stem_padding(backbone, name),
                "fc": f"moco{version} head" if version else ("zeros: no classifier; the features are the avgpool "
                                                             "output (fc = Identity)" if fc == "zeros" else "none")}
    if (meta.get("imported") or {}).get("sha256"):
        metadata["imported_from_sha256"] = meta["imported"]["sha256"]
    if fmt == "torchvision":
        torch_io.write_safetensors(out, state, metadata)
    else:
        payload = {"model": detectron2_names(state), "__author__": "mixmask-tf", "matching_heuristics": True}
        checkpoint.atomic_write_bytes(out, pickle.dumps(payload, protocol=4))
    return {"path": out, "tensors": len(state), **metadata}


def main(argv):
    from absl import flags
    from absl import logging as absl_logging

    if len(argv) > 1:
        print(f"export.torch_weights: error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(2)
    absl_logging.set_verbosity(absl_logging.WARNING)
    f = flags.FLAGS
    from mixmask_tf import encoders

    try:
        if not f.encoder or not f.out:
            raise ValueError("--encoder and --out are required")
        summary = export_weights(f.encoder, f.out, f.format, f.head, f.fc)
    except (ValueError, FileNotFoundError, encoders.EncoderLoadError) as e:
        print(f"export.torch_weights: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {summary['path']}: {summary['backbone']}{' + ' + summary['head'] + ' head' if summary['head'] else ''}"
          f" weights with {'torchvision' if f.format == 'torchvision' else 'Detectron2'} names", flush=True)


def entry_point():
    """The command (`python -m export.torch_weights`, or the console script `mixmask-export-safetensors`)."""
    from absl import app, flags

    flags.DEFINE_string("encoder", None, "A run folder (pretrained or imported), an export folder or version, or a "
                        ".keras backbone file.")
    flags.DEFINE_string("out", None, "The file to write (.safetensors; .pkl for --format=detectron2).")
    flags.DEFINE_enum("format", "torchvision", list(FORMATS), "torchvision: .safetensors with torchvision's keys; "
                      "detectron2: the .pkl Detectron2's MODEL.WEIGHTS reads.")
    flags.DEFINE_bool("head", False, "Add the run's MoCo projection head as fc (MoCo's encoder_q layout).")
    flags.DEFINE_enum("fc", "zeros", list(FC_CHOICES), "Without --head: torchvision's 1000-way fc as zeros (the stock "
                      "torchvision model loads the file strictly; replace fc by Identity for the features), or none.")
    app.run(main)


if __name__ == "__main__":
    entry_point()
