r"""Train-step throughput of every framework with and without each branch.

    python -m benchmarks.step_throughput                                   # small ConvNet, CPU defaults
    python -m benchmarks.step_throughput --backbones=small_convnet,resnet18_cifar --jit=false,true \
        --precision=float32,mixed_float16 --json=/tmp/step_throughput.json
    python -m benchmarks.step_throughput --augment_on=host,device --frameworks=mocov2 --branches=none,mixmask

For each (backbone, framework, branch, jit, precision) it times the compiled train step on one
fixed batch (the input pipeline excluded; `benchmarks.input_pipeline` measures that) and prints:
ms/step, images/s, the overhead of the branch over the plain framework next to its
theoretical floor, and the share of the step spent in the branch's own mask and mix ops (timed
alone, compiled the same way). With --augment_on=host,device each row is timed twice: given finished
views, and given the packed host share that the step finishes itself (augmentation on the device);
the `+augment` column is the difference, what device-side augmentation adds to a step on this
machine. Writes every row to --json.

Theoretical floor: a forward pass costs 1 unit and a backward pass 2, so an encoder that is
trained costs 3 units per batch and a momentum / target encoder 1. MoCo: query 3 + key 1 = 4; each
extra query batch of a branch adds 3, so MixMask's floor is 7 / 4 = 1.75× (the issue's figure).
SimCLR and SimSiam: 3 + 3 = 6 (floor 9 / 6 = 1.5× for one batch); BYOL: 3 + 3 + 1 + 1 = 8
(11 / 8 = 1.375×). This is the ratio the encoder passes alone imply: the step's fixed costs
(heads, losses, optimizer update, queue) shrink the measured ratio below it, and anything above
it is overhead of the branch itself (its mask and mix ops, shown in the last column).
"""

import json
import os
import platform
import time

import trainers

trainers.train_step_threads()  # and the package's oneDNN / logging defaults, before TensorFlow

from absl import app, flags

flags.DEFINE_list("backbones", ["small_convnet"], "Backbones: small_convnet, resnet18_cifar, resnet50, resnet50_keras.")
flags.DEFINE_list("frameworks", ["mocov2", "simclr", "byol", "simsiam"], "Frameworks.")
flags.DEFINE_list("branches", ["none", "mixmask", "unmix", "mixmask_unmix", "erase"], "Branches.")
flags.DEFINE_list("jit", ["false"], "XLA settings (true/false).")
flags.DEFINE_list("precision", ["float32"], "Keras dtype policies: float32, mixed_float16, mixed_bfloat16.")
flags.DEFINE_list("augment_on", ["host"],
                  "host: the step is given finished views (the augmentation is in tf.data, not timed); device: the "
                  "step is given the packed host share and finishes the views itself (--augment_on=device), so the "
                  "difference of the two rows is what augmentation on the device adds to a step on this machine.")
flags.DEFINE_string("augment", None, "Preset of the device rows (default: fashion_mnist for 1 channel, mocov2 for 3).")
flags.DEFINE_integer("width", 32, "Small ConvNet width.")
flags.DEFINE_list("small_image_shape", ["28", "28", "1"], "H,W,C for the small ConvNet.")
flags.DEFINE_list("resnet_image_shape", ["32", "32", "3"], "H,W,C for the ResNets.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue size.")
flags.DEFINE_integer("grid_size", 4, "Mask grid size.")
flags.DEFINE_integer("steps", 10, "Timed steps per row.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (tracing, compilation).")
flags.DEFINE_boolean("keras_batchnorm", False,
                     "Train BatchNorm with Keras' unfused ops instead of the fused kernel (A/B of batchnorm.py).")
flags.DEFINE_string("json", None, "Write the rows here.")
FLAGS = flags.FLAGS

# (trained encoder batches, momentum/target encoder batches) of each framework's clean step.
CLEAN_PASSES = {"mocov1": (1, 1), "mocov2": (1, 1), "simclr": (2, 0), "simsiam": (2, 0), "byol": (2, 2)}
EXTRA_BATCHES = {"none": 0, "mixmask": 1, "unmix": 1, "mixmask_unmix": 2, "erase": 2}


def floor_ratio(framework, branch):
    """Theoretical step-time ratio of framework + branch over the plain framework (fwd 1, bwd 2)."""
    trained, target = CLEAN_PASSES[framework]
    clean = 3 * trained + target
    return (clean + 3 * EXTRA_BATCHES[branch]) / clean


def time_call(fn, steps, warmup):
    """Median seconds per call of fn() after `warmup` untimed calls (fn returns something to sync on)."""
    import numpy as np

    for _ in range(warmup):
        _sync(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _sync(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _sync(value):
    import tensorflow as tf

    for t in tf.nest.flatten(value):
        if hasattr(t, "numpy"):
            t.numpy()


def build(backbone_name, shape, framework, branch_name, jit, precision, device_augment=None):
    import keras

    from mixmask_tf import backbones, branches, models

    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    kwargs = {"width": FLAGS.width} if backbone_name == "small_convnet" else {}
    backbone = backbones.build_backbone(backbone_name, shape, **kwargs)
    mask = {"grid_size": FLAGS.grid_size}
    options = {"none": {}, "mixmask": mask, "unmix": {}, "mixmask_unmix": mask, "erase": mask}[branch_name]
    branch = branches.build_branch(branch_name, **options)
    framework_kwargs = {"queue_size": FLAGS.queue_size} if framework.startswith("moco") else {}
    model = models.build_trainer(framework, backbone, branch=branch, seed=0, device_augment=device_augment,
                                 **framework_kwargs)
    # MoCo v2's optimizer, as configs/quick_mocov2.cfg (and the PyTorch reference) use it.
    model.compile(optimizer=keras.optimizers.SGD(0.06, momentum=0.9, weight_decay=5e-4), jit_compile=jit)
    return model


def measure(backbone_name, framework, branch_name, jit, precision, augment_on="host"):
    """One row: step time and the branch ops' own time."""
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import augment

    shape = tuple(int(v) for v in (FLAGS.small_image_shape if backbone_name == "small_convnet"
                                   else FLAGS.resnet_image_shape))
    views = preset = None
    batch = tf.constant(np.random.default_rng(0).normal(size=(FLAGS.batch_size, 2) + shape).astype("float32"))
    if augment_on == "device":
        preset = FLAGS.augment or ("fashion_mnist" if shape[2] == 1 else "mocov2")
        views = augment.TwoViewAugment.from_preset(preset, shape[:2], shape[2], (0.5,) * shape[2], (0.25,) * shape[2])
        images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch_size, shape[0] + 8, shape[1] + 8, shape[2]),
                                                   dtype=np.uint8)
        packed = views.batch(images, tf.constant([0, 1], tf.int64), packed=True)
        batch = tf.constant(views.on_device(packed))  # the branch ops below time the same views
    model = build(backbone_name, shape, framework, branch_name, jit, precision, device_augment=views)
    model.make_train_function()
    step = model.train_function
    data = iter(tf.data.Dataset.from_tensors(batch if views is None else packed).repeat())
    seconds = time_call(lambda: step(data), FLAGS.steps, FLAGS.warmup)
    branch_seconds = 0.0
    if branch_name != "none":
        x1 = batch[:, 0]

        @tf.function(jit_compile=jit)
        def branch_ops(seed):
            out = model.branch(x1, seed)
            return [b.images for b in out.batches]

        seed = tf.constant([0, 1], tf.int32)
        branch_seconds = time_call(lambda: branch_ops(seed), FLAGS.steps, FLAGS.warmup)
    return {"backbone": backbone_name, "image_shape": list(shape), "framework": framework, "branch": branch_name,
            "jit": jit, "precision": precision, "augment_on": augment_on,
            "augment": preset,
            "batch_size": FLAGS.batch_size, "ms_per_step": seconds * 1e3,
            "images_per_second": FLAGS.batch_size / seconds, "branch_ops_ms": branch_seconds * 1e3,
            "branch_ops_share": branch_seconds / seconds, "floor_ratio": floor_ratio(framework, branch_name)}


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    if FLAGS.keras_batchnorm:
        from mixmask_tf import batchnorm

        batchnorm.BatchNorm.fused_kernel = False
    devices = tf.config.list_physical_devices("GPU")
    device = devices[0].name if devices else f"CPU ({os.cpu_count()} cores, {platform.processor() or 'unknown'})"
    print(f"device: {device}; TF {tf.__version__}, Keras {keras.__version__}, "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, threads inter-op "
          f"{os.environ.get('TF_NUM_INTEROP_THREADS')} / intra-op {os.environ.get('TF_NUM_INTRAOP_THREADS')}, "
          f"batch {FLAGS.batch_size}, BatchNorm {'Keras ops' if FLAGS.keras_batchnorm else 'fused kernel'}", flush=True)
    header = (f"{'backbone':15s} {'framework':9s} {'branch':14s} {'jit':5s} {'precision':14s} {'augment':7s} "
              f"{'ms/step':>8s} {'img/s':>7s} {'ratio':>6s} {'floor':>6s} {'mask+mix':>9s} {'+augment':>9s}")
    print(header)
    rows = []
    for backbone_name in FLAGS.backbones:
        for precision in FLAGS.precision:
            for jit in (v == "true" for v in FLAGS.jit):
                for framework in FLAGS.frameworks:
                    plain = {}
                    for branch_name in FLAGS.branches:
                        host_ms = None
                        for augment_on in FLAGS.augment_on:
                            row = measure(backbone_name, framework, branch_name, jit, precision, augment_on)
                            if branch_name == "none":
                                plain[augment_on] = row["ms_per_step"]
                            base = plain.get(augment_on)
                            row["ratio_to_plain"] = row["ms_per_step"] / base if base else None
                            # What finishing the views inside the step adds, against the row given finished views.
                            row["augment_ms"] = row["ms_per_step"] - host_ms if host_ms is not None else None
                            if augment_on == "host":
                                host_ms = row["ms_per_step"]
                            rows.append(row)
                            ratio = f"{row['ratio_to_plain']:.2f}x" if row["ratio_to_plain"] else "-"
                            share = f"{100 * row['branch_ops_share']:.1f}%" if branch_name != "none" else "-"
                            extra = f"{row['augment_ms']:+8.1f}ms" if row["augment_ms"] is not None else "-"
                            print(f"{backbone_name:15s} {framework:9s} {branch_name:14s} {str(jit):5s} "
                                  f"{precision:14s} {augment_on:7s} {row['ms_per_step']:8.1f} "
                                  f"{row['images_per_second']:7.0f} {ratio:>6s} {row['floor_ratio']:5.2f}x "
                                  f"{share:>9s} {extra:>9s}", flush=True)
    keras.mixed_precision.set_dtype_policy("float32")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"device": device, "tensorflow": tf.__version__, "keras": keras.__version__,
                       "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                       "inter_op_threads": os.environ.get("TF_NUM_INTEROP_THREADS"),
                       "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
                       "keras_batchnorm": FLAGS.keras_batchnorm, "rows": rows}, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
