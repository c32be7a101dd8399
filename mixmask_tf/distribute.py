"""Choosing a `tf.distribute` strategy, and what a worker needs to know about it.

One function per concern, each taking explicit arguments (the command line's ``--strategy``,
``--tpu`` and ``--cpu_devices`` are turned into calls of these in ``trainers/flag_groups``):

* :func:`split_cpu`: N logical CPU devices (MirroredStrategy on a CPU, for tests and CPU users);
* :func:`parse_tf_config`: the cluster of ``TF_CONFIG``, checked, with a clear error;
* :func:`make_strategy`: ``auto``, ``one_device``, ``mirrored``, ``multi_worker`` or ``tpu``;
* :func:`worker_of`: this process's worker index, worker count and whether it is the chief;
* :func:`check_global_batch`: the global batch must split evenly over the replicas;
* :func:`scaled_learning_rate`: the linear scaling rule ``lr · B / 256``;
* :func:`distribute_pretrain_dataset`: each input pipeline builds only its share of every
  global batch (``data.make_pretrain_dataset(shard=...)``), split into per-replica batches.

TensorFlow rules this module follows: the logical CPU split and a MultiWorkerMirroredStrategy
must be made before any other TensorFlow work in the process (TensorFlow fixes its devices and
configures collective ops once, at start-up, and refuses to change them later).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import tensorflow as tf

__all__ = ["STRATEGIES", "StrategyError", "WorkerInfo", "split_cpu", "parse_tf_config", "make_strategy",
           "worker_of", "check_global_batch", "scaled_learning_rate", "distribute_pretrain_dataset"]

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


class StrategyError(ValueError):
    """A strategy that cannot be built here (bad TF_CONFIG, no TPU, devices already set up...)."""


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """Where this process stands in a (possibly single-worker) cluster.

    Attributes:
      index: 0-based worker index (the chief is 0).
      count: number of workers (input pipelines' hosts).
      is_chief: whether this worker writes the run's files.
      task_type: "chief" / "worker" from TF_CONFIG, or None for a single host.
      task_id: the TF_CONFIG task index, or None.
    """
    index: int = 0
    count: int = 1
    is_chief: bool = True
    task_type: Optional[str] = None
    task_id: Optional[int] = None


def split_cpu(count: int) -> list:
    """Splits the first physical CPU into `count` logical devices; returns their names.

    Must run before TensorFlow initialises its devices (before any op runs).

    Raises:
      StrategyError: count < 1, or the devices are already initialised with another split.
    """
    if count < 1:
        raise StrategyError(f"cpu_devices must be >= 1, got {count}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != count:
            raise StrategyError(f"cannot split the CPU into {count} devices: TensorFlow already set up {have} "
                                f"({e})") from e
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def parse_tf_config(text: Optional[str]) -> dict:
    """Parses and checks a ``TF_CONFIG`` value.

    Args:
      text: the variable's value (JSON), or None when it is unset.

    Returns:
      {"cluster": {task type: [addresses]}, "task": {"type": str, "index": int}}.

    Raises:
      StrategyError: unset, not JSON, no worker list, or a task that is not in the cluster.
    """
    if not text:
        raise StrategyError("--strategy=multi_worker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                            "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e}): {text!r}") from e
    if not isinstance(config, dict):
        raise StrategyError(f"TF_CONFIG must be a JSON object, got {text!r}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError(f"TF_CONFIG has no 'cluster' (e.g. {{\"worker\": [\"host:port\", ...]}}): {text!r}")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
            raise StrategyError(f"TF_CONFIG cluster[{kind!r}] must be a list of 'host:port' strings, got {addresses!r}")
    if not set(cluster) & {"worker", "chief"}:
        raise StrategyError(f"TF_CONFIG cluster needs 'worker' (and optionally one 'chief'), got {sorted(cluster)}")
    if len(cluster.get("chief", [])) > 1:
        raise StrategyError(f"TF_CONFIG may have one 'chief', got {cluster['chief']}")
    if not isinstance(task, dict) or "type" not in task:
        raise StrategyError(f"TF_CONFIG has no 'task' (e.g. {{\"type\": \"worker\", \"index\": 0}}): {text!r}")
    index = task.get("index", 0)
    if task["type"] not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise StrategyError(f"TF_CONFIG task {task} is not in the cluster {cluster}")
    return {"cluster": cluster, "task": {"type": task["type"], "index": index}}


def _local_gpus():
    return tf.config.list_physical_devices("GPU")


def make_strategy(kind: str = "auto", tpu: Optional[str] = None, cpu_devices: int = 0,
                  environ: Optional[dict] = None):
    """The `tf.distribute` strategy of `kind`.

    Args:
      kind: one of :data:`STRATEGIES`:
        * "auto": MirroredStrategy over the local GPUs when there are several, else the
          default strategy of the one device TensorFlow places ops on;
        * "one_device": OneDeviceStrategy on the first GPU (or the CPU);
        * "mirrored": MirroredStrategy over the local GPUs, or over `cpu_devices` logical CPUs
          when there is no GPU;
        * "multi_worker": MultiWorkerMirroredStrategy of the cluster in ``TF_CONFIG``;
        * "tpu": TPUStrategy of `tpu` (a name or grpc:// address; None: the local TPU VM).
      tpu: see "tpu".
      cpu_devices: N > 1 splits the CPU into N logical devices first (no GPU only; with
        "mirrored" these are its replicas; 0 or 1: no split).
      environ: where TF_CONFIG is read (default `os.environ`). A lost worker needs no timeout:
        the others' next collective fails within seconds (tests/trainers/test_multi_worker.py).

    Raises:
      StrategyError: an unknown kind, a bad TF_CONFIG, no TPU, or cpu_devices with GPUs.
    """
    environ = os.environ if environ is None else environ
    if kind not in STRATEGIES:
        raise StrategyError(f"unknown strategy {kind!r}; choose one of {', '.join(STRATEGIES)}")
    if cpu_devices and cpu_devices > 1:
        if _local_gpus():
            raise StrategyError("--cpu_devices splits the CPU of a machine without GPUs; here TensorFlow sees "
                                f"{len(_local_gpus())} GPU(s): drop --cpu_devices")
        if kind in ("tpu", "one_device"):
            raise StrategyError(f"--cpu_devices does not apply to --strategy={kind}")
        split_cpu(cpu_devices)
    if kind == "multi_worker":
        parse_tf_config(environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise StrategyError(f"--strategy=tpu: no TPU {'named ' + repr(tpu) if tpu else 'on this machine'} "
                                f"could be reached ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                                ) from e
        return tf.distribute.TPUStrategy(resolver)
    gpus = _local_gpus()
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if kind == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if len(gpus) > 1:  # auto
        return tf.distribute.MirroredStrategy()
    if cpu_devices and cpu_devices > 1:
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def worker_of(strategy) -> WorkerInfo:
    """This process's place in `strategy`'s cluster (a single host: index 0 of 1, the chief).

    The chief is the "chief" task if the cluster has one, else worker 0 (TensorFlow's rule).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return WorkerInfo()
    task_type, task_id = resolver.task_type, resolver.task_id
    spec = resolver.cluster_spec().as_dict()
    if not task_type:
        return WorkerInfo()
    kinds = [k for k in ("chief", "worker") if k in spec]
    order = [(k, i) for k in kinds for i in range(len(spec[k]))]
    index = order.index((task_type, int(task_id))) if (task_type, int(task_id)) in order else 0
    is_chief = index == 0
    return WorkerInfo(index=index, count=len(order), is_chief=is_chief, task_type=task_type, task_id=int(task_id))


def check_global_batch(global_batch: int, replicas: int) -> int:
    """The per-replica batch of `global_batch` split over `replicas`.

    Raises:
      StrategyError: the batch does not divide evenly.
    """
    if global_batch % replicas:
        raise StrategyError(f"--batch_size {global_batch} (the global batch) does not divide over the {replicas} "
                            f"replicas; use a multiple of {replicas}, e.g. {max(replicas, global_batch // replicas * replicas)}")
    return global_batch // replicas


def scaled_learning_rate(base_lr: float, global_batch: int, reference_batch: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017): ``base_lr · global_batch / reference_batch``."""
    return float(base_lr) * global_batch / reference_batch


def distribute_pretrain_dataset(strategy, make_shard: Callable[[int, int], "tf.data.Dataset"], global_batch: int):
    """A distributed pretraining dataset in which each input pipeline builds only its share.

    Args:
      strategy: the tf.distribute strategy.
      make_shard: callable (shard index, shard count) -> tf.data.Dataset whose elements are the
        shard's rows of every global batch, [global_batch / count, ...] (e.g.
        ``data.make_pretrain_dataset(..., shard=(index, count))``).
      global_batch: B.

    Returns:
      what ``keras.Model.fit`` takes: the shard's dataset itself with the default strategy, else
      a distributed dataset in which global replica g receives rows [g·b, (g+1)·b) of every
      global batch (b = B / replicas), so every global batch is the one a single device sees.
    """
    replicas = strategy.num_replicas_in_sync
    per_replica = check_global_batch(global_batch, replicas)
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return make_shard(0, 1)

    def dataset_fn(context: tf.distribute.InputContext):
        count, index = context.num_input_pipelines, context.input_pipeline_id
        if global_batch % count:
            raise StrategyError(f"--batch_size {global_batch} does not divide over {count} input pipelines")
        ds = make_shard(index, count)
        # Each pipeline feeds its local replicas consecutive per-replica batches.
        return ds.rebatch(per_replica, drop_remainder=True) if per_replica != global_batch // count else ds

    return strategy.distribute_datasets_from_function(dataset_fn)
