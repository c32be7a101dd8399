"""Run flags: where the run lives, its seed, how the step is compiled, monitoring, logging and export."""

import sys

from absl import flags

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, logs, export). Resumes if it holds a run.")
flags.DEFINE_integer("seed", 0, "Base seed of data order, augmentation, masks and initialisation.")
flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_integer("steps_per_execution", 1, "Train steps per compiled call (fewer host round trips; TPUs want "
                     "tens). Lowered to the largest divisor of the steps per epoch, so that epochs, checkpoints "
                     "and the NaN check stay on step boundaries.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in <model_dir>/checkpoints (the newest N).")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "Keras dtype policy of every layer: float32, or float16 / bfloat16 compute with float32 "
                  "weights (mixed_float16 adds dynamic loss scaling; losses and BatchNorm stay float32). "
                  "For GPUs / TPUs: on a CPU float16 is emulated (many times slower) and bfloat16 gained "
                  "nothing on this project's 2-core machine (README).")
# Evaluation and export.
flags.DEFINE_integer("knn_every", 1, "kNN evaluation every N epochs (0: only after the last epoch).")
flags.DEFINE_integer("knn_k", 200, "kNN neighbours.")
flags.DEFINE_float("knn_t", 0.1, "kNN temperature.")
flags.DEFINE_enum("knn_feature", "backbone", ["backbone", "head"],
                  "What the kNN monitor (and its random-init control) scores: the pooled backbone output, or "
                  "the query encoder's output with its projection head (MoCo: the query embedding of the loss; "
                  "SimCLR / SimSiam / BYOL: the projector output, not BYOL's or SimSiam's predictor), as the MoCo "
                  "CIFAR demo and Un-Mix's CIFAR code do. Recorded as knn_feature in metrics.jsonl and results.json.")
flags.DEFINE_boolean("random_init_knn", True, "Also report kNN of the same architecture at random init.")
flags.DEFINE_boolean("online_probe", False,
                     "Train a linear classifier on stop-gradient backbone features of the query view during "
                     "pretraining (needs a labeled train split; its own Adam optimizer, the pretraining is "
                     "unchanged; costs one extra inference forward per step). Logs probe_top1 (train batches) and "
                     "val_probe_top1 (test split, at the kNN epochs).")
flags.DEFINE_float("probe_learning_rate", 1e-3, "Online probe: Adam learning rate (no weight decay).")
flags.DEFINE_boolean("export", True, "Export the backbone as a SavedModel at the end.")
flags.DEFINE_string("export_dir", None, "Export base folder (default <model_dir>/export).")
flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard scalars and mixed-view images to <model_dir>/tensorboard.")
flags.DEFINE_boolean("plots", True, "Write masks.png (mask and mixture montage) and curves.png to the model dir.")
flags.DEFINE_integer("verbose", -1, "Keras fit verbosity: -1 a progress bar on a terminal, else none; 0 none; "
                     "1 progress bar; 2 Keras' line per epoch. The run's own one-line epoch summary always prints.")


def validate():
    """Checks the run flags; raises UserError."""
    f = FLAGS
    if not f.model_dir:
        raise UserError("--model_dir is required")
    if f.knn_k <= 0:
        raise UserError(f"--knn_k must be positive, got {f.knn_k}")
    if f.knn_t <= 0:
        raise UserError(f"--knn_t must be positive, got {f.knn_t}")
    if f.probe_learning_rate <= 0:
        raise UserError(f"--probe_learning_rate must be positive, got {f.probe_learning_rate}")
    if f.steps_per_execution < 1:
        raise UserError(f"--steps_per_execution must be >= 1, got {f.steps_per_execution}")
    if f.keep_checkpoints < 1:
        raise UserError(f"--keep_checkpoints must be >= 1, got {f.keep_checkpoints}")


def probe_epochs(every, epochs):
    """The 1-based epochs at which the KnnMonitor (and with it the online probe) evaluates."""
    return [e for e in range(1, epochs + 1) if (every and e % every == 0) or e == epochs]


def verbosity():
    """Keras fit verbosity from --verbose (-1: a progress bar on a terminal, else none)."""
    if FLAGS.verbose >= 0:
        return FLAGS.verbose
    return 1 if sys.stdout.isatty() else 0


def steps_per_execution(steps_per_epoch):
    """--steps_per_execution lowered to the largest divisor of `steps_per_epoch` (at least 1)."""
    wanted = min(FLAGS.steps_per_execution, steps_per_epoch)
    return max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)
