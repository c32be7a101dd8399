r"""A tf.data service dispatcher or worker, for `pretrain --data_service=grpc://host:port`.

    python -m trainers.data_service --role=dispatcher --port=5050
    python -m trainers.data_service --role=worker --dispatcher=grpc://host:5050 --port=5051 --host=worker1

Runs until it is stopped (Ctrl-C, SIGTERM, SIGKILL). Prints one line once it serves:
`data service dispatcher: grpc://...` or `data service worker: host:port, dispatcher grpc://...`.
The workers run the trainer's input pipeline: start them where the data's files are readable under
the paths the trainer opens (docs/distributed.md, "tf.data service").
"""

import signal
import sys
import time

from absl import app, flags

from .flag_groups import UserError

FLAGS = flags.FLAGS

flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "What to run: the dispatcher, or a worker of one.")
flags.DEFINE_integer("port", 0, "TCP port to serve on (0: a free one, printed at start).")
flags.DEFINE_string("dispatcher", None, "--role=worker: the dispatcher's address, grpc://host:port.")
flags.DEFINE_string("host", "localhost", "--role=worker: the host name under which trainers reach this worker.")
flags.DEFINE_string("work_dir", None, "--role=dispatcher: folder where the dispatcher journals its state, so that "
                    "a restarted dispatcher recovers its jobs (default: none, state in memory).")
flags.DEFINE_integer("worker_timeout_ms", None, "--role=dispatcher: how long a silent worker stays registered "
                     "(default: TensorFlow's).")


def validate():
    """Checks the flags; raises UserError."""
    from mixmask_tf import checks  # no TensorFlow: a bad flag fails at once

    if FLAGS.role is None:
        raise UserError("--role=dispatcher or --role=worker is required")
    if not 0 <= FLAGS.port < 65536:
        raise UserError(f"--port must lie in [0, 65535], got {FLAGS.port}")
    if FLAGS.role == "worker":
        if not FLAGS.dispatcher:
            raise UserError("--role=worker needs --dispatcher=grpc://host:port")
        try:
            checks.service_address("--dispatcher", FLAGS.dispatcher)
        except ValueError as e:
            raise UserError(str(e)) from e
    elif FLAGS.dispatcher or FLAGS.host != "localhost":
        raise UserError("--dispatcher and --host are worker flags (--role=worker)")
    if FLAGS.role == "worker" and (FLAGS.work_dir or FLAGS.worker_timeout_ms is not None):
        raise UserError("--work_dir and --worker_timeout_ms are dispatcher flags (--role=dispatcher)")
    if FLAGS.worker_timeout_ms is not None and FLAGS.worker_timeout_ms < 1:
        raise UserError(f"--worker_timeout_ms must be positive, got {FLAGS.worker_timeout_ms}")


def serve():
    """Starts the server of --role and blocks until the process is stopped."""
    from mixmask_tf.data import service

    if FLAGS.role == "dispatcher":
        server = service.start_dispatcher(FLAGS.port, work_dir=FLAGS.work_dir,
                                          worker_timeout_ms=FLAGS.worker_timeout_ms)
        print(f"data service dispatcher: {server.target}", flush=True)
    else:
        service.check_reachable(FLAGS.dispatcher, timeout_s=120)  # a dispatcher starting beside it
        server = service.start_worker(FLAGS.dispatcher, FLAGS.port, FLAGS.host)
        print(f"data service worker: {FLAGS.host}:{server._address.rpartition(':')[2]}, dispatcher "
              f"{FLAGS.dispatcher}", flush=True)
    while True:  # in Python, so that SIGINT and SIGTERM stop it (server.join() would not return to Python)
        time.sleep(3600)


def main(argv):
    if len(argv) > 1:
        print(f"data_service: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    try:
        validate()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        serve()
    except KeyboardInterrupt:
        sys.exit(0)
    except UserError as e:
        print(f"data_service: error: {e}", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:  # service.ServiceError: an unreachable dispatcher
        print(f"data_service: error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # TensorFlow could not start the server (a port in use, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"data_service: error: could not start the {FLAGS.role} on port {FLAGS.port}: {first}",
              file=sys.stderr)
        sys.exit(2)


def entry_point():
    """The console script `mixmask-data-service`."""
    app.run(main)


if __name__ == "__main__":
    entry_point()
