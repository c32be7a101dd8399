"""Command-line entry points (the only code that parses flags).

In a checkout this package is `trainers` (``python -m trainers.pretrain``); installed with pip it is
`mixmask_tf.trainers` (and `export` is `mixmask_tf.export`), so that no generically named package
lands in site-packages. Its modules import each other relatively, and reach `export` through
:func:`export_module`, so the same files work under both names.

Importing the package (which `python -m trainers.<command>` does first) sets the TensorFlow
environment every command wants, before TensorFlow is imported: on a machine without a GPU or
TPU (:func:`accelerator_present`; with one, TensorFlow's defaults stay), oneDNN kernels on (TF 2.21
leaves them off on these AMD CPUs; turning them on made a graph-mode ResNet-18 step 1.7x
faster) and C++ start-up logging quiet. `train_step_threads()` (called by pretrain and the step
benchmarks) adds the thread pools that suit the train step. A value the user set always wins.
"""

import glob
import importlib
import os


def accelerator_present(dev="/dev"):
    """Whether this machine has a GPU or TPU (judged before TensorFlow is imported, from the device
    files the drivers create: /dev/nvidia<N>, /dev/accel<N> (TPU VM), /dev/vfio (TPU v4+), or a
    TPU_NAME / TPU_ACCELERATOR_TYPE variable). The CPU tuning below applies only without one."""
    patterns = ("nvidia[0-9]*", "accel[0-9]*", "vfio/[0-9]*")
    if any(glob.glob(os.path.join(dev, p)) for p in patterns):
        return True
    return bool(os.environ.get("TPU_NAME") or os.environ.get("TPU_ACCELERATOR_TYPE"))


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not accelerator_present():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def cpu_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def train_step_threads():
    """TensorFlow thread pools for the train step (call before TensorFlow is imported).

    A siamese step runs two or three independent encoder passes (query, key, and the branch's
    mixed query): two ops at a time, each on half the cores (TF_NUM_INTEROP_THREADS=2,
    TF_NUM_INTRAOP_THREADS=cores/2) keeps every core busy without oversubscribing them. On the
    2-core CPU this made the MoCo v2 + MixMask step (small ConvNet, batch 128) ~1.3x faster than
    TensorFlow's defaults, and steadier (README, Performance).
    """
    if accelerator_present():  # on GPUs and TPUs TensorFlow's defaults
        return
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, cpu_cores() // 2)))


def export_module(name):
    """A module of the `export` package beside this one: `export.<name>` in a checkout,
    `mixmask_tf.export.<name>` when installed."""
    parent = __name__.rpartition(".")[0]
    return importlib.import_module(f"{parent + '.' if parent else ''}export.{name}")
