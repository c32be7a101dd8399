"""The tf.data service flag of pretraining: build the training batches on a dispatcher's workers."""

from absl import flags

from mixmask_tf import checks

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_string("data_service", None, "grpc://host:port of a tf.data service dispatcher whose workers build the "
                    "training batches (the data_service command starts them: docs/distributed.md). "
                    "Each batch goes to one worker (dynamic sharding); the workers must read the data under the same "
                    "paths. Default: the batches are built in this process.")


def validate():
    """Checks --data_service (a grpc://host:port, one trainer process); raises UserError."""
    if FLAGS.data_service is None:
        return
    try:
        checks.service_address("--data_service", FLAGS.data_service)
    except ValueError as e:
        raise UserError(str(e)) from e
    if FLAGS.strategy in ("multi_worker", "tpu"):
        raise UserError(f"--data_service feeds one trainer process; it does not go with --strategy={FLAGS.strategy} "
                        "(use auto, one_device or mirrored)")
