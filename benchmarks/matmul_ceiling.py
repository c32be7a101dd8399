r"""This machine's matmul ceiling, and the FLOPs of a train step, to say how close a step gets to it.

Ceiling: the median time of `--reps` square float32 matmuls (`tf.matmul` or `torch.mm`, n x n, after
`--warmup` untimed ones) as GFLOP/s, counting 2 n^3 FLOPs per matmul. Each framework runs in its own
process (TensorFlow from the TF venv, torch from the torch venv; this module imports neither at the
top, so both can run it):

    .venv/bin/python -m benchmarks.matmul_ceiling --framework tf --n 4096 --reps 5
    /work/torchvenv/bin/python -m benchmarks.matmul_ceiling --framework torch --n 4096 --reps 5

TensorFlow runs with the package's CPU defaults (oneDNN on) and its own default thread pools (one
matmul spread over every core: the machine's ceiling, not the train step's inter-op 2 x intra-op
cores/2 split); torch with `torch.set_num_threads(--threads)` (default: every core this process may
use). `--json_out` writes the result as JSON.

FLOPs of a step (`forward_flops`, `encoder_forward_flops`, `step_flops`): counted analytically from
the Keras model, 2 x multiply-adds of every Conv2D and Dense layer, one forward pass of one image.
`benchmarks.interleaved` divides a step's FLOPs by its time and by the ceiling.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

# Forward-pass equivalents of one image in one MoCo v2 train step: a pass with gradient costs
# forward 1 + backward 2 = 3, the momentum (key) encoder's pass without gradient 1.
# plain: query fwd+bwd (3) + key fwd (1) = 4; + MixMask: + the mixed query's fwd+bwd (3) = 7.
STEP_FORWARD_EQUIVALENTS = {"none": 4, "mixmask": 7}


def _spatial_size(layer, shape):
    """Product of the spatial dimensions of a conv layer's output shape (batch dim excluded)."""
    dims = shape[2:] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[1:-1]
    size = 1
    for d in dims:
        if d is None:
            raise ValueError(f"{layer.name}: output shape {shape} is not static")
        size *= int(d)
    return size


def _layers(model):
    """Every layer of a Keras model, nested models expanded (a sub-model counts once per use in
    `model.layers`; a layer shared inside one model counts once)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def forward_flops(model):
    """FLOPs of one forward pass of one example through a Keras model: 2 x multiply-adds.

    Sums over every `keras.layers.Conv2D` and `keras.layers.Dense` layer (nested models included)
    of 2 x MACs, from the layer's static output shape and its kernel:

      * Conv2D: H_out x W_out x (k_h x k_w x C_in / groups) x C_out  (kernel shape
        [k_h, k_w, C_in / groups, C_out], so MACs = H_out x W_out x prod(kernel shape));
      * Dense: prod(leading non-batch output dims) x (in x out), i.e. in x out for [N, in] inputs.

    Bias adds, BatchNorm, activations, pooling and the loss are not counted (a few per cent of a
    ResNet's convolutions at most): this is the matrix-unit work the ceiling measures.

    Args:
      model: a built Keras model (functional or Sequential) with static non-batch shapes.

    Returns:
      int: FLOPs per example.
    """
    import keras

    macs = 0
    for layer in _layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = 1
            for d in layer.kernel.shape:
                kernel *= int(d)
            shape = tuple(layer.output.shape)
            if isinstance(layer, keras.layers.Conv2D):
                macs += _spatial_size(layer, shape) * kernel
            else:
                lead = 1
                for d in shape[1:-1]:
                    lead *= int(d)
                macs += lead * kernel
    return 2 * macs


def encoder_forward_flops(backbone_name, image_shape, width=32, framework="mocov2", queue_size=4096):
    """(backbone FLOPs, query-encoder FLOPs) of one forward pass of one image, for the encoder that
    `benchmarks.step_throughput` trains (backbone + MoCo v2 head, built the same way)."""
    import keras

    from mixmask_tf import backbones, models

    keras.utils.set_random_seed(0)
    kwargs = {"width": width} if backbone_name == "small_convnet" else {}
    backbone = backbones.build_backbone(backbone_name, tuple(image_shape), **kwargs)
    trainer = models.build_trainer(framework, backbone, seed=0, queue_size=queue_size)
    return forward_flops(backbone), forward_flops(trainer.query_encoder)


def step_flops(encoder_flops, batch_size, branch):
    """FLOPs of one MoCo v2 train step: batch x forward FLOPs x forward equivalents of the branch
    (`STEP_FORWARD_EQUIVALENTS`: 4 plain, 7 with MixMask)."""
    return batch_size * encoder_flops * STEP_FORWARD_EQUIVALENTS[branch]


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _tf_matmul(n, reps, warmup):
    import trainers  # noqa: F401  (the package's CPU defaults: oneDNN on), before TensorFlow

    import tensorflow as tf

    a = tf.random.normal((n, n), seed=0)
    b = tf.random.normal((n, n), seed=1)
    matmul = tf.function(tf.matmul)
    times = []
    for i in range(warmup + reps):
        start = time.perf_counter()
        matmul(a, b).numpy()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    info = {"version": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
            "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS")}
    return times, info


def _torch_matmul(n, reps, warmup, threads):
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    times = []
    with torch.no_grad():
        for i in range(warmup + reps):
            start = time.perf_counter()
            torch.mm(a, b)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    info = {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available()}
    return times, info


def measure(framework, n=4096, reps=5, warmup=1, threads=None):
    """One ceiling measurement in this process: dict with the median seconds and GFLOP/s."""
    threads = threads or cores()
    if framework == "tf":
        times, info = _tf_matmul(n, reps, warmup)
    elif framework == "torch":
        times, info = _torch_matmul(n, reps, warmup, threads)
    else:
        raise ValueError(f"framework must be 'tf' or 'torch', got {framework!r}")
    seconds = statistics.median(times)
    flops = 2 * n ** 3
    return {"framework": framework, "n": n, "dtype": "float32", "reps": reps, "warmup": warmup,
            "flops_per_matmul": flops, "seconds": times, "median_seconds": seconds,
            "gflops": flops / seconds / 1e9, "best_gflops": flops / min(times) / 1e9, "framework_info": info,
            "cpu": cpu_model(), "cores": cores(), "python": sys.executable,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--framework", required=True, choices=["tf", "torch"])
    p.add_argument("--n", type=int, default=4096, help="matrix size (n x n float32)")
    p.add_argument("--reps", type=int, default=5, help="timed matmuls (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed matmuls")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    p.add_argument("--json_out", default=None, help="write the result here")
    args = p.parse_args(argv)
    result = measure(args.framework, args.n, args.reps, args.warmup, args.threads)
    print(f"{args.framework} matmul {args.n}x{args.n} float32: median {result['median_seconds'] * 1e3:.1f} ms "
          f"of {args.reps} -> {result['gflops']:.1f} GFLOP/s (best {result['best_gflops']:.1f}); "
          f"{result['framework_info']}", flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
