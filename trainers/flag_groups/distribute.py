"""Distribution flags: the tf.distribute strategy and the CPU split (pretraining and fine-tuning).

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


def validate():
    """Checks the distribution flags; raises UserError."""
    f = FLAGS
    if f.cpu_devices < 0:
        raise UserError(f"--cpu_devices must be >= 0, got {f.cpu_devices}")
    if f.cpu_devices > 1 and f.strategy in ("one_device", "tpu", "multi_worker"):
        raise UserError(f"--cpu_devices applies to --strategy=mirrored or auto, not {f.strategy}")
    if f.tpu and f.strategy != "tpu":
        raise UserError("--tpu needs --strategy=tpu")


def build_strategy():
    """The --strategy (call before any other TensorFlow work); raises UserError when it cannot be built."""
    from mixmask_tf import distribute

    try:
        return distribute.make_strategy(FLAGS.strategy, tpu=FLAGS.tpu, cpu_devices=FLAGS.cpu_devices)
    except distribute.StrategyError as e:
        raise UserError(str(e)) from e

