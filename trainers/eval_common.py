"""What the evaluation commands share: the encoder flags, the data they read, the results file.

`trainers.knn_eval`, `trainers.linear_eval` and `trainers.finetune` take `--encoder` (a
pretraining `--model_dir`, an export folder or version, or a `.keras` file; with
`--checkpoint` a given epoch of a run). The dataset flags default to what the run was trained
on (its `flags.cfg`, or the export's model card) and images are always brought to the
encoder's input size and channels.
"""

import hashlib
import json
import os
import sys
import time

from absl import flags

from .flag_groups import UserError
from .flag_groups import data as data_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("encoder", None, "What to evaluate: a pretraining --model_dir (its last epoch), an export "
                    "folder (newest version) or version folder <export_dir>/<n>, or a .keras backbone file.")
flags.DEFINE_string("checkpoint", None, "With a model_dir: evaluate this checkpoint (ckpt-<step>, or a legacy ckpt-<epoch>.npz; a path "
                    "or a name in <model_dir>/checkpoints) instead of the last epoch.")
flags.DEFINE_string("output", None, "Results JSON (default <model_dir>/eval/<command>.json for a run; none otherwise).")
flags.DEFINE_enum("control", "none", ["none", "random_init", "raw_pixels"],
                  "Evaluate a control instead of the encoder: the same architecture at random init (seed "
                  "--control_seed), or the normalised raw pixels as features (kNN and linear probe only).")
flags.DEFINE_integer("control_seed", 0, "Seed of the random-init control.")
flags.DEFINE_integer("eval_batch_size", 512, "Images per batch when computing features.")

# Dataset flags a run's flags.cfg may supply when the user did not set them.
_RUN_DATA_FLAGS = ("dataset", "data_dir", "manual_dir", "train_split", "test_split", "eval_crop_ratio")


def load_encoder(feature="backbone"):
    """The Encoder named by --encoder / --checkpoint; adjusts the dataset flags to it.

    Args:
      feature: "backbone", or "head" (`--feature=head` of knn_eval: the query encoder's output with
        its projection head; a pretraining run only, see `mixmask_tf.encoders.load_encoder`).
    """
    from mixmask_tf import encoders

    if not FLAGS.encoder:
        raise UserError("--encoder is required (a pretraining model_dir, an export folder or a .keras file)")
    if feature != "backbone" and FLAGS.control == "raw_pixels":
        raise UserError(f"--feature={feature}: the raw_pixels control has no {feature}")
    try:
        encoder = encoders.load_encoder(FLAGS.encoder, checkpoint=FLAGS.checkpoint, feature=feature)
    except encoders.EncoderLoadError as e:
        raise UserError(f"--feature={feature}: {e}" if feature != "backbone" else str(e)) from e
    defaults = {}
    if encoders.is_run_dir(FLAGS.encoder):
        defaults = encoders.run_data_flags(FLAGS.encoder)
    elif encoder.metadata.get("dataset"):
        defaults = {"dataset": encoder.metadata["dataset"]}
    for name in _RUN_DATA_FLAGS:
        if name in defaults and not FLAGS[name].present:
            FLAGS[name].parse(defaults[name])
    height, width, channels = encoder.image_shape
    if FLAGS.channels and FLAGS.channels != channels:
        raise UserError(f"--channels={FLAGS.channels}, but the encoder takes {channels}-channel images")
    if not FLAGS.channels:
        FLAGS.channels = channels
    if height == width:
        if FLAGS.image_size and FLAGS.image_size != height:
            raise UserError(f"--image_size={FLAGS.image_size}, but the encoder takes {height}x{width} images")
        FLAGS.image_size = height
    data_flags.validate_data_flags()
    if FLAGS.control == "random_init":
        try:
            encoder = encoders.random_init_like(encoder, FLAGS.control_seed)
        except encoders.EncoderLoadError as e:
            raise UserError(f"--control=random_init: {e}") from e
    elif FLAGS.control == "raw_pixels":
        encoder = encoders.raw_pixel_encoder(encoder.image_shape, encoder.mean, encoder.std)
    return encoder


def open_labeled_sources(encoder):
    """(train source, test source): both labeled and at the encoder's input shape."""
    train, test, why = data_flags.open_sources()
    if test is None:
        raise UserError(f"evaluation needs labeled train and test splits: {why}")
    if tuple(train.info.image_shape) != encoder.image_shape:
        raise UserError(f"the data are {train.info.image_shape} but the encoder takes {encoder.image_shape}; "
                        "set --image_size / --channels")
    print(f"data: {train.description}", flush=True)
    print(f"data: {test.description}", flush=True)
    return train, test


def features(encoder, source, normalize=False, cache_tag=None):
    """Features and labels of every image of a source (deterministic transform), in order."""
    from mixmask_tf import data, encoders

    start = time.time()
    result = encoder.features(data.make_eval_dataset(source, None, FLAGS.eval_batch_size, encoders.raw_pixels),
                              normalize=normalize)
    print(f"features: {result[0].shape[0]} x {result[0].shape[1]}{' ' + cache_tag if cache_tag else ''} "
          f"({time.time() - start:.1f}s)", flush=True)
    return result


def _describe_filter(encoder):
    """', high-pass input filter (sigma 5, radius 15)' for an encoder with an input filter, else ''."""
    f = getattr(encoder, "input_filter", None)
    return f", high-pass input filter (sigma {f['sigma']:g}, radius {f['radius']})" if f else ""


def describe(encoder):
    m = encoder.metadata
    head = " of the head output" if m.get("feature") == "head" else ""
    if FLAGS.control != "none":
        return f"control: {FLAGS.control} ({'x'.join(map(str, encoder.image_shape))} input, " \
               f"{encoder.embedding_dim} features{head}{_describe_filter(encoder)})"
    parts = [f"{m.get('framework') or '?'} + {m.get('branch') or '?'}"] if m.get("framework") else []
    if m.get("imported"):
        parts = [f"imported from {os.path.basename(m['imported']['source'])}, {m['imported']['layout']} layout"]
    elif m.get("epochs") is not None:
        parts.append(f"{m['epochs']} epochs")
    return f"encoder: {m.get('path', FLAGS.encoder)} ({encoder.kind}{', ' + ', '.join(parts) if parts else ''}; " \
           f"input {'x'.join(map(str, encoder.image_shape))}{_describe_filter(encoder)}, features " \
           f"{encoder.embedding_dim}{head})"


def write_results(command, results, feature="backbone"):
    """Writes the results JSON (atomically) where --output says, and returns its path or None.

    The default file of a run is `<model_dir>/eval/<command>[-<checkpoint>][-<control>][-head].json`.
    """
    from mixmask_tf import checkpoint, encoders

    path = FLAGS.output
    if path is None and encoders.is_run_dir(FLAGS.encoder):
        suffix = f"-{os.path.splitext(os.path.basename(FLAGS.checkpoint))[0]}" if FLAGS.checkpoint else ""
        suffix += f"-{FLAGS.control}" if FLAGS.control != "none" else ""
        suffix += f"-{feature}" if feature != "backbone" else ""
        path = os.path.join(FLAGS.encoder, "eval", f"{command}{suffix}.json")
    if path is None:
        return None
    checkpoint.atomic_write_text(path, json.dumps(results, indent=2))
    return path


def common_results(encoder, train, test):
    """The results-file fields every evaluation writes; `input_filter` is the filter the evaluated
    encoder applied after normalising (`filters.HighPassFilter.as_dict()`, or None)."""
    return {"encoder": encoder.metadata, "control": FLAGS.control, "checkpoint": FLAGS.checkpoint, "dataset": FLAGS.dataset,
            "train_split": FLAGS.train_split, "test_split": FLAGS.test_split, "train_examples": train.num_examples,
            "test_examples": test.num_examples, "image_shape": list(encoder.image_shape),
            "input_filter": getattr(encoder, "input_filter", None)}


def fingerprint(values):
    """A short stable hash of a JSON-able value (e.g. a subset's indices)."""
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def main_wrapper(command, run):
    """Runs `run()`; user errors print one line and exit with status 2."""

    def main(argv):
        from absl import logging

        from mixmask_tf import data

        if len(argv) > 1:
            print(f"{command}: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
            sys.exit(2)
        if FLAGS.verbosity <= 0:
            logging.set_verbosity(logging.WARNING)
        try:
            run()
        except (UserError, ValueError, FileNotFoundError, data.DatasetNotFoundError, data.CorruptDatasetError) as e:
            logging.debug("error", exc_info=True)
            print(f"{command}: error: {e}", file=sys.stderr)
            sys.exit(2)

    return main
