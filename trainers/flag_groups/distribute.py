"""Distribution flags: the tf.distribute strategy, the CPU split, steps per execution, LR scaling.

The strategy must exist before any other TensorFlow work of the process (MultiWorkerMirrored's
collectives and the logical CPU split are configured at start-up): :func:`build_strategy` is the
first TensorFlow call of a command.
"""

from absl import flags

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy. auto: MirroredStrategy over the local GPUs when there are several, else "
                  "the one device; one_device; mirrored: all local GPUs (or --cpu_devices logical CPUs); "
                  "multi_worker: MultiWorkerMirroredStrategy of the cluster in TF_CONFIG (run the same command "
                  "on every worker); tpu: TPUStrategy of --tpu.")
flags.DEFINE_string("tpu", None, "--strategy=tpu: TPU name or grpc:// address (default: the local TPU VM).")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (machines without GPUs; with "
                     "--strategy=mirrored they are its replicas; for tests and CPU users). 0: no split.")
flags.DEFINE_integer("steps_per_execution", 1, "Train steps per compiled call (fewer host round trips; TPUs want "
                     "tens). Lowered to the largest divisor of the steps per epoch, so that epochs, checkpoints "
                     "and the NaN check stay on step boundaries.")
flags.DEFINE_boolean("scale_learning_rate", False, "Linear scaling rule: the learning rate is --learning_rate x "
                     "--batch_size / --reference_batch_size (Goyal et al. 2017). Off: --learning_rate is used as is.")
flags.DEFINE_integer("reference_batch_size", 256, "The batch size --learning_rate is meant for under "
                     "--scale_learning_rate.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept in <model_dir>/checkpoints (the newest N).")


def validate():
    """Checks the distribution flags; raises UserError."""
    f = FLAGS
    if f.cpu_devices < 0:
        raise UserError(f"--cpu_devices must be >= 0, got {f.cpu_devices}")
    if f.cpu_devices > 1 and f.strategy in ("one_device", "tpu", "multi_worker"):
        raise UserError(f"--cpu_devices applies to --strategy=mirrored or auto, not {f.strategy}")
    if f.tpu and f.strategy != "tpu":
        raise UserError("--tpu needs --strategy=tpu")
    if f.steps_per_execution < 1:
        raise UserError(f"--steps_per_execution must be >= 1, got {f.steps_per_execution}")
    if f.reference_batch_size < 1:
        raise UserError(f"--reference_batch_size must be >= 1, got {f.reference_batch_size}")
    if f.keep_checkpoints < 1:
        raise UserError(f"--keep_checkpoints must be >= 1, got {f.keep_checkpoints}")


def build_strategy():
    """The --strategy (call before any other TensorFlow work); raises UserError when it cannot be built."""
    from mixmask_tf import distribute

    try:
        return distribute.make_strategy(FLAGS.strategy, tpu=FLAGS.tpu, cpu_devices=FLAGS.cpu_devices)
    except distribute.StrategyError as e:
        raise UserError(str(e)) from e


def steps_per_execution(steps_per_epoch):
    """--steps_per_execution lowered to the largest divisor of `steps_per_epoch` (at least 1)."""
    wanted = min(FLAGS.steps_per_execution, steps_per_epoch)
    return max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)


def learning_rate(global_batch):
    """The peak learning rate: --learning_rate, linearly scaled under --scale_learning_rate."""
    if FLAGS.scale_learning_rate:
        return FLAGS.learning_rate * global_batch / FLAGS.reference_batch_size
    return FLAGS.learning_rate

