r"""Semi-supervised and supervised fine-tuning of a pretrained encoder (paper Table 6).

    python -m trainers.finetune --encoder /tmp/mixmask_demo --label_fraction 0.01
    python -m trainers.finetune --encoder /tmp/mixmask_demo --label_fraction 0.1
    python -m trainers.finetune --encoder /tmp/mixmask_demo --label_fraction 1.0

The backbone (its `.keras` copy: from the run, or the export's assets.extra) and a new linear
classifier are trained together on a class-balanced subset of the training labels drawn from
--subset_seed (the same seed always draws the same images; 1 % is contained in 10 %). SGD with
momentum 0.9, lr 0.001 on the backbone and 1 / 0.1 / 0.01 on the classifier for 1 / 10 / 100 %
(Table 6), 20 epochs, random resized crop + flip. Reports top-1 / top-5 on the test split,
writes `<model_dir>/eval/finetune-<pct>.json` (with the subset's per-class counts and a
fingerprint of its indices) and, with --save_model, the fine-tuned classifier as `.keras`.
An encoder trained with an input filter (MSCN's high-pass, `mixmask_tf.ops.filters`) is fine-tuned and
saved with the filter in front of its backbone (`Encoder.trainable_backbone`); the results record
`input_filter`.

`--strategy` (`mirrored` for several GPUs, `--cpu_devices` on a CPU, `tpu`) trains over several
replicas with --batch_size as the global batch; multi-worker fine-tuning is not offered (Keras'
multi-worker `fit` cannot take (images, labels) batches).
"""

import time

from absl import app, flags

from . import eval_common
from .flag_groups import UserError
from .flag_groups import data as data_flags
from .flag_groups import distribute as distribute_flags

FLAGS = flags.FLAGS

flags.DEFINE_float("label_fraction", 0.1, "Fraction of the training labels (paper: 0.01, 0.1, 1.0).")
flags.DEFINE_integer("subset_seed", 0, "Seed of the class-balanced label subset.")
flags.DEFINE_integer("seed", 0, "Seed of the classifier init, data order and augmentation.")
flags.DEFINE_integer("epochs", 20, "Fine-tuning epochs (BMVC version: 20).")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_float("backbone_lr", 0.001, "Backbone learning rate (Table 6: 0.001).")
flags.DEFINE_float("classifier_lr", None, "Classifier learning rate (default Table 6: 1 / 0.1 / 0.01 for 1 / 10 / "
                   "100 % of the labels).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum of both optimizers.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay of both optimizers.")
flags.DEFINE_enum("schedule", "cosine", ["cosine", "constant"], "Learning-rate schedule of both optimizers.")
flags.DEFINE_boolean("augment", True, "Random resized crop + horizontal flip on the training images.")
flags.DEFINE_list("crop_scale", ["0.08", "1.0"], "Random resized crop area range 'min,max'.")
flags.DEFINE_string("save_model", None, "Write the fine-tuned classifier (normalised images -> logits, with the "
                    "encoder's input filter inside) here (.keras).")


def _optimizer(lr, steps):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, max(steps, 1)) if FLAGS.schedule == "cosine" else lr
    return keras.optimizers.SGD(schedule, momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay or None)


def train_dataset(source, subset, encoder, seed, crop_scale, drop_remainder=False):
    """Repeated, shuffled (per epoch, from the seed), augmented, normalised batches of the subset."""
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import augment, linear_probe

    size = encoder.image_shape[:2]
    mean = np.asarray(encoder.mean, np.float32)
    std = np.asarray(encoder.std, np.float32)

    def transform(example, counter):
        image, label = example
        if FLAGS.augment:
            pixels = linear_probe.augment_train_image(image, tf.stack([tf.constant(seed, tf.int64), counter]), size,
                                                      crop_scale)
        else:
            pixels = tf.cast(image, tf.float32)
        return augment.normalize(pixels / 255.0, mean, std), label

    indices = tf.data.Dataset.from_tensor_slices(subset.astype(np.int64))
    indices = indices.shuffle(len(subset), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = tf.data.Dataset.zip((source.load(indices), tf.data.Dataset.range(np.iinfo(np.int64).max)))
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(FLAGS.batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def run():
    distribute_flags.validate()
    if FLAGS.strategy == "multi_worker":
        raise UserError("--strategy=multi_worker is for pretraining; fine-tune on one machine (--strategy=mirrored "
                        "uses all its GPUs)")
    strategy = distribute_flags.build_strategy()  # before any other TensorFlow work

    import keras
    import numpy as np
    import tensorflow as tf

    from mixmask_tf import augment, checkpoint, data, distribute, finetune

    try:
        distribute.check_global_batch(FLAGS.batch_size, strategy.num_replicas_in_sync)
    except distribute.StrategyError as e:
        raise UserError(str(e)) from e
    if not 0 < FLAGS.label_fraction <= 1:
        raise UserError(f"--label_fraction must be in (0, 1], got {FLAGS.label_fraction}")
    if FLAGS.epochs < 1 or FLAGS.batch_size < 1 or FLAGS.backbone_lr < 0:
        raise UserError("--epochs and --batch_size must be >= 1 and --backbone_lr >= 0")
    crop_scale = data_flags.parse_crop_scale(FLAGS.crop_scale)
    if FLAGS.control == "raw_pixels":
        raise UserError("--control=raw_pixels has nothing to fine-tune; use --control=random_init (training from "
                        "scratch) or the kNN / linear evaluations")
    classifier_lr = FLAGS.classifier_lr or finetune.paper_classifier_lr(FLAGS.label_fraction)
    encoder = eval_common.load_encoder()
    print(eval_common.describe(encoder), flush=True)
    train, test = eval_common.open_labeled_sources(encoder)
    if not train.indexable:
        raise UserError("fine-tuning draws a label subset by index: the train split must be in memory or files")
    labels = _labels(train)
    subset = finetune.balanced_subset(labels, FLAGS.label_fraction, FLAGS.subset_seed)
    counts = {int(c): int(n) for c, n in zip(*np.unique(labels[subset], return_counts=True))}
    print(f"label subset: {len(subset)} of {len(labels)} images ({FLAGS.label_fraction:g}), class-balanced "
          f"(seed {FLAGS.subset_seed}): {min(counts.values())}-{max(counts.values())} per class", flush=True)
    steps = -(-len(subset) // FLAGS.batch_size)
    keras.utils.set_random_seed(FLAGS.seed)
    with strategy.scope():
        model = finetune.FineTuner(encoder.trainable_backbone(), int(train.info.num_classes))
        model.compile(backbone_optimizer=_optimizer(FLAGS.backbone_lr, steps * FLAGS.epochs),
                      head_optimizer=_optimizer(classifier_lr, steps * FLAGS.epochs))
    replicas = strategy.num_replicas_in_sync
    print(f"fine-tuning {FLAGS.epochs} epochs x {steps} steps, lr backbone {FLAGS.backbone_lr:g} / classifier "
          f"{classifier_lr:g}" + (f", {replicas} replicas ({type(strategy).__name__})" if replicas > 1 else ""),
          flush=True)
    start = time.time()
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)  # static batch shapes
    history = model.fit(train_dataset(train, subset, encoder, FLAGS.seed, crop_scale, drop_remainder=tpu),
                        epochs=FLAGS.epochs,
                        steps_per_epoch=steps, verbose=2 if FLAGS.epochs <= 50 else 0, shuffle=False)

    def preprocess(image):
        return augment.eval_preprocess(image, encoder.mean, encoder.std)

    scores, test_labels = finetune.predict_scores(model, data.make_eval_dataset(test, None, FLAGS.eval_batch_size,
                                                                                 preprocess))
    result = finetune.evaluate_scores(scores, test_labels)
    if FLAGS.save_model:
        inputs = keras.Input(encoder.image_shape)
        checkpoint.atomic_save_keras(keras.Model(inputs, model.head(model.backbone(inputs)), name="finetuned_classifier"),
                                     FLAGS.save_model)
    results = {**eval_common.common_results(encoder, train, test), "label_fraction": FLAGS.label_fraction,
               "subset_seed": FLAGS.subset_seed, "subset_size": int(len(subset)), "subset_class_counts": counts,
               "subset_fingerprint": eval_common.fingerprint(subset.tolist()), "epochs": FLAGS.epochs,
               "backbone_lr": FLAGS.backbone_lr, "classifier_lr": classifier_lr, "seed": FLAGS.seed,
               "final_train_loss": float(history.history["loss"][-1]), "finetune_top1": result["top1"],
               "finetune_top5": result.get("top5"), "train_seconds": round(time.time() - start, 1)}
    pct = f"{FLAGS.label_fraction * 100:g}pct"
    path = eval_common.write_results(f"finetune-{pct}", results)
    top5 = f", top-5 {result['top5']:.2f}%" if "top5" in result else ""
    print(f"fine-tuned on {FLAGS.label_fraction * 100:g}% of the labels, {FLAGS.dataset} {FLAGS.test_split}: "
          f"top-1 {result['top1']:.2f}%{top5}" + (f"  [{path}]" if path else ""), flush=True)


def _labels(source):
    """All labels of a labeled source, in index order."""
    import numpy as np
    import tensorflow as tf

    if hasattr(source, "labels"):
        return np.asarray(source.labels, np.int64)
    ds = source.load(tf.data.Dataset.range(source.num_examples)).map(lambda image, label: label)
    return np.fromiter(ds.batch(4096).unbatch().as_numpy_iterator(), np.int64, count=source.num_examples)


def entry_point():
    """The console script `mixmask-finetune`."""
    app.run(eval_common.main_wrapper("finetune", run))


if __name__ == "__main__":
    entry_point()
