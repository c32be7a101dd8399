r"""Imports a PyTorch checkpoint (the papers' released weights) as a run folder.

    python -m trainers.import_checkpoint --checkpoint=moco_v2_200ep_pretrain.pth.tar --model_dir=/tmp/mocov2
    python -m trainers.import_checkpoint --checkpoint=simclr-cifar10.ckpt --model_dir=/tmp/solo --dataset=cifar10
    python -m trainers.knn_eval --encoder=/tmp/mocov2 --dataset=imagenet2012        # then any evaluator

Reads MoCo-style `.pth.tar` (MoCo v1/v2, MixMask, Un-Mix: the query encoder and its head by
default; `--key_prefix=module.encoder_k.` for the key encoder), solo-learn `.ckpt` (`backbone.*`),
plain torchvision state dicts and `.safetensors` files, without PyTorch and without executing
anything from the file (`mixmask_tf.torch_io`). Writes `--model_dir` as `mixmask_tf.torch_import.
import_checkpoint` says: `backbone.keras`, `config.json`, the model card `import.json` (source file,
SHA-256, key prefix), and a training checkpoint with the MoCo head for `--feature=head`.

A refused or unreadable file (code in the pickle, truncated, unknown layout, wrong architecture,
a missing / extra / mis-shaped key) is one line on stderr and exit status 2.
"""

import sys

from absl import app, flags

from .flag_groups import UserError

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint", None, "The PyTorch checkpoint: .pth / .pth.tar / .ckpt (the zip format of torch >= 1.6, or the legacy one) "
                    "or .safetensors.")
flags.DEFINE_string("model_dir", None, "The run folder to write (must not hold a run yet).")
flags.DEFINE_string("key_prefix", "auto", "Key prefix of the encoder in the state dict; auto tries "
                    "module.encoder_q. (MoCo's query encoder), encoder_q., module.backbone., backbone. (solo-learn), "
                    "module., and none. module.encoder_k. imports MoCo's key encoder.")
flags.DEFINE_enum("backbone", None, ["resnet50", "resnet18_cifar"], "Refuse the file unless it holds this backbone "
                  "(default: whichever of the two it holds).")
flags.DEFINE_integer("image_size", None, "Input side of the Keras encoder (default 224 for resnet50, 32 for "
                     "resnet18_cifar).")
flags.DEFINE_list("mean", None, "Per-channel normalisation mean in [0, 1] units, as the checkpoint was trained "
                  "(default: --dataset's, else ImageNet's for resnet50, CIFAR-10's for resnet18_cifar).")
flags.DEFINE_list("std", None, "Per-channel normalisation std (default as --mean).")
flags.DEFINE_string("dataset", None, "The dataset the evaluators default to for this run (e.g. imagenet2012, cifar10).")
flags.DEFINE_string("stem_padding", "auto", "CIFAR ResNet-18 only: the padding of its 3x3 conv1, which a state dict "
                    "does not record: auto = 2 for solo-learn files (its Conv2d(3, 64, 3, 1, padding=2)), else 1.")
flags.DEFINE_float("eval_crop_ratio", None, "Evaluation and serving centre-crop ratio (default 0.875, Resize(256) + "
                   "CenterCrop(224), with --dataset=imagenet* or folder; else 1).")


def _floats(name):
    values = FLAGS[name].value
    if values is None:
        return None
    try:
        return [float(v) for v in values]
    except ValueError:
        raise UserError(f"--{name} must be comma-separated numbers, got {','.join(values)}") from None


def _stem_padding():
    if FLAGS.stem_padding == "auto":
        return "auto"
    if not FLAGS.stem_padding.isdigit():
        raise UserError(f"--stem_padding must be auto or an integer >= 0, got {FLAGS.stem_padding}")
    return int(FLAGS.stem_padding)


def run():
    from mixmask_tf import torch_import

    if not FLAGS.checkpoint or not FLAGS.model_dir:
        raise UserError("--checkpoint and --model_dir are required")
    if FLAGS.image_size is not None and FLAGS.image_size < 1:
        raise UserError(f"--image_size must be >= 1, got {FLAGS.image_size}")
    card = torch_import.import_checkpoint(
        FLAGS.checkpoint, FLAGS.model_dir, prefix=FLAGS.key_prefix, backbone=FLAGS.backbone,
        image_size=FLAGS.image_size, mean=_floats("mean"), std=_floats("std"), dataset=FLAGS.dataset,
        eval_crop_ratio=FLAGS.eval_crop_ratio, stem_padding=_stem_padding())
    head = f" + MoCo {card['head']['framework'][-2:]} head" if card["head"] else ""
    head += f" (conv1 padding {card['stem_padding']})" if card["stem_padding"] is not None else ""
    print(f"imported {card['backbone']}{head} from {card['source']} ({card['layout']} layout, key prefix "
          f"{card['key_prefix']!r}, sha256 {card['sha256'][:12]}...) into {FLAGS.model_dir}", flush=True)


def main(argv):
    from absl import logging

    from mixmask_tf.torch_io import CheckpointError

    if len(argv) > 1:
        print(f"import_checkpoint: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    logging.set_verbosity(logging.WARNING)
    try:
        run()
    except (UserError, CheckpointError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"import_checkpoint: error: {e}", file=sys.stderr)
        sys.exit(2)


def entry_point():
    """The console script `mixmask-import-checkpoint`."""
    app.run(main)


if __name__ == "__main__":
    entry_point()
