"""Feeding a trainer from a tf.data service cluster (TensorFlow's dispatcher and workers).

The trainer builds its dataset as usual; :func:`distribute` sends it to the service, whose
workers run it (the dataset's graph is serialized to them: no ``py_function``, and files are read
by path, so every worker must see the same paths) and hand the elements to the trainer. What an
element is does not matter here.

* :func:`parse_address`: ``grpc://host:port``, checked, with a clear error;
* :func:`check_reachable`: a TCP connection to the dispatcher within a timeout (TensorFlow itself
  retries an unreachable dispatcher for a very long time without a word);
* :func:`start_dispatcher`, :func:`start_worker`: the servers (``trainers/data_service.py`` is the
  command that runs them);
* :func:`distribute`: the dataset served with ``ShardingPolicy.DYNAMIC``.

The address check itself is :func:`mixmask_tf.checks.service_address` (no TensorFlow: the
command-line flags use it before TensorFlow is imported).

**Processing mode.** DYNAMIC: the dispatcher hands out the splits of the dataset's *source
dataset* one at a time, to whichever worker asks, so each split is processed at most once and,
when no worker fails, exactly once. Only the outermost source is split (a ``flat_map``'s inner
datasets are not; a ``zip`` of two sources is split into misaligned pairs), so a dataset meant for
it has one source whose elements are the units to hand out: ``make_pretrain_dataset(...,
split_batches=True)`` is one epoch whose only source is the range of its batch numbers.
Elements arrive in the order workers finish them, not in the source's order. A worker that dies
takes the splits it was processing or had buffered with it (TensorFlow does not hand them out
again); the others go on. The static policies (FILE, DATA, ...) would instead need every listed
worker back at its address before the job could finish; OFF would make each worker produce the
whole dataset.
"""

from __future__ import annotations

import socket
import time
from typing import Optional, Tuple

import tensorflow as tf

from mixmask_tf import checks

__all__ = ["ServiceError", "parse_address", "check_reachable", "start_dispatcher", "start_worker", "distribute"]

PROTOCOL = "grpc"  # the only protocol TensorFlow ships


class ServiceError(ValueError):
    """A bad tf.data service address, or a dispatcher that cannot be reached."""


def parse_address(address: str) -> Tuple[str, int]:
    """(host, port) of a dispatcher address ``grpc://host:port``; ServiceError for another form."""
    try:
        return checks.service_address("a tf.data service address", address)
    except ValueError as e:
        raise ServiceError(str(e)) from None


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Waits up to `timeout_s` for the dispatcher at `address` to accept a TCP connection (trying
    every half second); raises ServiceError if it does not.

    A port that answers but is not a dispatcher is not detected here.
    """
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())):
                return
        except OSError as e:
            if time.monotonic() + 0.5 > deadline:
                raise ServiceError(f"no tf.data service dispatcher answers at {address} within {timeout_s:g} s "
                                   f"({e.strerror or type(e).__name__}); start one with `python -m "
                                   f"trainers.data_service --role=dispatcher --port={port}` (docs/distributed.md)"
                                   ) from e
        time.sleep(0.5)


def start_dispatcher(port: int, work_dir: Optional[str] = None, worker_timeout_ms: Optional[int] = None):
    """Starts a tf.data service dispatcher on `port` (0: a free one); returns the server (``.target``).

    Args:
      port: TCP port.
      work_dir: where the dispatcher journals its state (then it is fault tolerant: restarted with
        the same folder it recovers its jobs); None: in memory only.
      worker_timeout_ms: how long a silent worker stays registered (None: TensorFlow's default).
    """
    config = dict(port=int(port), protocol=PROTOCOL, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    if worker_timeout_ms is not None:
        config["worker_timeout_ms"] = int(worker_timeout_ms)
    return tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig(**config))


def start_worker(dispatcher: str, port: int = 0, host: str = "localhost"):
    """Starts a tf.data service worker of the dispatcher at `dispatcher` (grpc://host:port).

    Args:
      dispatcher: the dispatcher's address.
      port: this worker's TCP port (0: a free one).
      host: the name under which trainers reach this worker (it tells the dispatcher
        ``host:port``).
    """
    parse_address(dispatcher)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher[len(PROTOCOL + "://"):], port=int(port), worker_address=f"{host}:%port%",
        protocol=PROTOCOL)
    return tf.data.experimental.service.WorkerServer(config)


def distribute(dataset: tf.data.Dataset, address: str, job_name: Optional[str] = None) -> tf.data.Dataset:
    """`dataset` served by the tf.data service at `address`, its source split dynamically over the workers.

    Args:
      dataset: any dataset whose graph serializes (no ``py_function``); with DYNAMIC sharding its
        one source dataset is split (see the module's docstring).
      address: the dispatcher, ``grpc://host:port`` (checked here, not contacted: see
        :func:`check_reachable`).
      job_name: None: every iterator of the result starts its own job (its own pass over the
        dataset); a name: trainers iterating with the same name share one job's elements.

    Returns:
      a dataset of the same elements, in the order the workers deliver them.
    """
    parse_address(address)
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=address, job_name=job_name))
