r"""Self-supervised pretraining from the command line.

    python -m trainers.pretrain --flagfile configs/demo.cfg
    python -m trainers.pretrain --flagfile configs/demo.cfg --epochs 2 --model_dir /tmp/run2

Writes to --model_dir: `flags.cfg` (the effective flags, a valid --flagfile), `config.json`,
`checkpoints/ckpt-<epoch>.npz` (full training state, atomic), `backbone.keras`,
`metrics.jsonl` (one line per epoch), `results.json`, and the SavedModel export in
`<export_dir>/<version>/`. Running the same command again resumes from the last checkpoint.
"""

import dataclasses
import json
import os
import sys
import time

# The trainers package has set TF_ENABLE_ONEDNN_OPTS / TF_CPP_MIN_LOG_LEVEL (trainers/__init__.py).
from absl import app, flags, logging

import trainers

trainers.train_step_threads()  # before TensorFlow is imported

from trainers import data_flags  # noqa: E402  (defines the dataset flags)
from trainers.data_flags import UserError  # noqa: E402

FLAGS = flags.FLAGS

# Run and data.
flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, logs, export). Resumes if it holds a run.")
# The names of mixmask_tf.augment.PRESET_NAMES (kept literal so that parsing flags does not import TF).
AUGMENT_PRESETS = ["fashion_mnist", "cifar", "mocov1", "mocov2", "simclr", "byol"]
flags.DEFINE_enum("augment", "fashion_mnist", AUGMENT_PRESETS,
                  "Augmentation preset named after its reference (byol: asymmetric views; cifar: no blur).")
flags.DEFINE_list("crop_scale", None, "Override the preset's random-resized-crop area range of both views: 'a,b' "
                 "with 0 < a <= b <= 1.")
flags.DEFINE_integer("seed", 0, "Base seed of data order, augmentation, masks and initialisation.")
# Model.
flags.DEFINE_enum("backbone", "small_convnet", ["small_convnet", "resnet18_cifar", "resnet50"], "Backbone.")
flags.DEFINE_integer("width", 32, "Width of the small ConvNet's first block.")
flags.DEFINE_integer("depth", 4, "Small ConvNet: 4 blocks, or 5 (a fifth, 8·width channels, stride 2).")
flags.DEFINE_integer("pool_grid", 1, "Small ConvNet: 1 global average pooling, g > 1 average pooling to g x g, "
                     "flattened.")
flags.DEFINE_enum("framework", "mocov2", ["mocov2", "mocov1", "simclr", "byol", "simsiam"], "Siamese framework.")
flags.DEFINE_integer("embedding_dim", 128, "Embedding dimension of the head / projector.")
flags.DEFINE_integer("hidden_dim", 0, "Hidden width of the head / projector / BYOL predictor (0: the feature size).")
flags.DEFINE_integer("projector_layers", 2, "SimCLR and SimSiam: Dense layers of the projector.")
flags.DEFINE_integer("predictor_hidden_dim", 0, "SimSiam: predictor bottleneck (0: embedding_dim / 4).")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue size K (>= batch_size; >= 2 x batch_size when symmetric).")
flags.DEFINE_float("moco_momentum", 0.99, "MoCo: momentum m of the key encoder.")
flags.DEFINE_boolean("symmetric", False, "MoCo: symmetric loss of Un-Mix's CIFAR code.")
flags.DEFINE_float("temperature", 0.2, "MoCo / SimCLR: temperature of every InfoNCE / NT-Xent term.")
flags.DEFINE_enum("mix_target", "view2", ["view2", "view1"], "SimCLR: clean view the branch terms score against.")
flags.DEFINE_float("tau", 0.99, "BYOL: base EMA coefficient of the target network.")
flags.DEFINE_enum("tau_schedule", "constant", ["constant", "cosine"], "BYOL: tau constant or cosine-scheduled to 1.")
# Branch.
flags.DEFINE_enum("branch", "mixmask", ["none", "mixmask", "unmix", "mixmask_unmix", "erase"],
                  "Extra query branch: MixMask, Un-Mix, MixMask* (both), or erase-based masking.")
flags.DEFINE_float("unmix_prob", 0.5, "Un-Mix: probability P of the global (Mixup) mixture, else region (CutMix).")
flags.DEFINE_float("unmix_beta", 1.0, "Un-Mix: lambda ~ Beta(beta, beta).")
flags.DEFINE_boolean("same_permutation", False, "MixMask*: use Un-Mix's reverse permutation for MixMask too (ablation).")
flags.DEFINE_enum("erase_fill", "zero", ["zero", "noise"], "Erase branch: fill of the erased cells.")
flags.DEFINE_integer("grid_size", 4, "MixMask grid size G (2 CIFAR, 4 Tiny-ImageNet, 8 ImageNet in the paper).")
flags.DEFINE_enum("mask_type", "blocked", ["blocked", "discrete"], "Mask pattern.")
flags.DEFINE_float("mask_ratio", 0.5, "Mask ratio in (0, 1).")
flags.DEFINE_list("mask_ratio_range", None, "Draw the ratio from U(a, b) per mask: 'a,b'.")
flags.DEFINE_boolean("per_sample_mask", False, "One mask and λ per image instead of per batch.")
flags.DEFINE_enum("permutation", "reverse", ["reverse", "random"],
                  "MixMask: which image fills the masked cells (MixMask* uses random unless --same_permutation).")
flags.DEFINE_boolean("switch_term", True, "Keep the (1 - λ) switch term.")
flags.DEFINE_integer("min_block_cells", None, "Blocked masks: minimum block (default 4, or 1 at G=2).")
# Optimisation.
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam", "lars"],
                  "Optimizer. LARS: weight decay inside the trust ratio; BatchNorm and biases excluded.")
flags.DEFINE_float("lars_eta", 0.001, "LARS trust coefficient.")
flags.DEFINE_enum("weight_decay_style", "decoupled", ["decoupled", "l2"],
                  "SGD: 'l2' adds weight_decay * w to the gradient before momentum, as torch.optim.SGD and the papers "
                  "(about 10x stronger at momentum 0.9); 'decoupled' is Keras' w -= lr * wd * w.")
flags.DEFINE_boolean("exclude_norm_and_bias_from_decay", False,
                     "SGD / Adam: no weight decay on normalisation parameters and biases (chosen by variable). "
                     "Off by default as in the MoCo reference; LARS always excludes them.")
flags.DEFINE_float("learning_rate", 0.06, "Peak learning rate.")
flags.DEFINE_float("sgd_momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay (Keras' decoupled form, scaled by the learning rate).")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 256, "Global batch size.")
flags.DEFINE_integer("warmup_epochs", 0, "Linear warm-up epochs before the cosine schedule.")
flags.DEFINE_integer("steps_per_epoch", None, "Limit steps per epoch (smoke runs).")
flags.DEFINE_boolean("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "Keras dtype policy of every layer: float32, or float16 / bfloat16 compute with float32 "
                  "weights (mixed_float16 adds dynamic loss scaling; losses and BatchNorm stay float32). "
                  "For GPUs / TPUs: on a CPU float16 is emulated (many times slower) and bfloat16 gained "
                  "nothing on this project's 2-core machine (README).")
# Evaluation and export.
flags.DEFINE_integer("knn_every", 1, "kNN evaluation every N epochs (0: only after the last epoch).")
flags.DEFINE_integer("knn_k", 200, "kNN neighbours.")
flags.DEFINE_float("knn_t", 0.1, "kNN temperature.")
flags.DEFINE_boolean("random_init_knn", True, "Also report kNN of the same architecture at random init.")
flags.DEFINE_boolean("online_probe", False,
                     "Train a linear classifier on stop-gradient backbone features of the query view during "
                     "pretraining (needs a labeled train split; its own Adam optimizer, the pretraining is "
                     "unchanged; costs one extra inference forward per step). Logs probe_top1 (train batches) and "
                     "val_probe_top1 (test split, at the kNN epochs).")
flags.DEFINE_float("probe_learning_rate", 1e-3, "Online probe: Adam learning rate (no weight decay).")
flags.DEFINE_boolean("export", True, "Export the backbone as a SavedModel at the end.")
flags.DEFINE_string("export_dir", None, "Export base folder (default <model_dir>/export).")
flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard scalars and mixed-view images to <model_dir>/tensorboard.")
flags.DEFINE_boolean("plots", True, "Write masks.png (mask and mixture montage) and curves.png to the model dir.")
flags.DEFINE_integer("verbose", -1, "Keras fit verbosity: -1 a progress bar on a terminal, else none; 0 none; "
                     "1 progress bar; 2 Keras' line per epoch. The run's own one-line epoch summary always prints.")


def validate_flags():
    """Checks flag combinations that absl's types cannot; raises UserError."""
    f = FLAGS
    if not f.model_dir:
        raise UserError("--model_dir is required")
    for name in ("epochs", "batch_size", "queue_size", "embedding_dim", "width", "knn_k"):
        if getattr(f, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(f, name)}")
    if f.framework.startswith("moco"):
        keys_per_step = f.batch_size * (2 if f.symmetric else 1)
        if f.queue_size < keys_per_step:
            raise UserError(f"--queue_size ({f.queue_size}) must be >= --batch_size ({f.batch_size})"
                            + (" x 2 with --symmetric" if f.symmetric else ""))
    elif f.symmetric:
        raise UserError("--symmetric applies to MoCo only (SimCLR, BYOL and SimSiam are symmetric already)")
    if f.learning_rate <= 0:
        raise UserError(f"--learning_rate must be positive, got {f.learning_rate}")
    if not 0 <= f.moco_momentum < 1:
        raise UserError(f"--moco_momentum must be in [0, 1), got {f.moco_momentum}")
    if f.temperature <= 0 or f.knn_t <= 0:
        raise UserError("--temperature and --knn_t must be positive")
    if f.warmup_epochs < 0 or f.warmup_epochs >= f.epochs:
        if f.warmup_epochs != 0:
            raise UserError(f"--warmup_epochs ({f.warmup_epochs}) must be in [0, --epochs)")
    if f.probe_learning_rate <= 0:
        raise UserError(f"--probe_learning_rate must be positive, got {f.probe_learning_rate}")
    if f.weight_decay_style == "l2" and f.optimizer != "sgd":
        raise UserError("--weight_decay_style=l2 is implemented for --optimizer=sgd (LARS has its own L2 term)")
    data_flags.validate_data_flags()
    crop_scale()
    if f.mask_ratio_range is not None and len(f.mask_ratio_range) != 2:
        raise UserError(f"--mask_ratio_range takes two numbers 'a,b', got {','.join(f.mask_ratio_range)}")


def crop_scale():
    """--crop_scale as (a, b), or None for the preset's; raises UserError when malformed."""
    return None if FLAGS.crop_scale is None else data_flags.parse_crop_scale(FLAGS.crop_scale)


def ratio_range():
    if FLAGS.mask_ratio_range is None:
        return None
    try:
        return tuple(float(v) for v in FLAGS.mask_ratio_range)
    except ValueError as e:
        raise UserError(f"--mask_ratio_range: {e}") from e


def build_branch():
    from mixmask_tf import branches

    f = FLAGS
    mask = dict(grid_size=f.grid_size, mask_type=f.mask_type, ratio=f.mask_ratio, ratio_range=ratio_range(),
                per_sample=f.per_sample_mask, min_block_cells=f.min_block_cells)
    options = {
        "none": {},
        "mixmask": dict(mask, permutation=f.permutation, switch=f.switch_term),
        "unmix": dict(global_prob=f.unmix_prob, beta=f.unmix_beta),
        "mixmask_unmix": dict(mask, switch=f.switch_term, global_prob=f.unmix_prob, beta=f.unmix_beta,
                              same_permutation=f.same_permutation),
        "erase": dict(mask, fill=f.erase_fill),
    }[f.branch]
    return branches.build_branch(f.branch, **options)


def build_backbone(image_shape):
    from mixmask_tf import backbones

    kwargs = {}
    if FLAGS.backbone == "small_convnet":
        kwargs = {"width": FLAGS.width, "depth": FLAGS.depth, "pool_grid": FLAGS.pool_grid}
    return backbones.build_backbone(FLAGS.backbone, image_shape, **kwargs)


def framework_flag_options(steps_per_epoch):
    """The flags' values of the options the chosen framework takes (models.framework_options)."""
    from mixmask_tf import models

    f = FLAGS
    values = dict(embedding_dim=f.embedding_dim, hidden_dim=f.hidden_dim or None, queue_size=f.queue_size,
                  momentum=f.moco_momentum, temperature=f.temperature, symmetric=f.symmetric,
                  projector_layers=f.projector_layers, predictor_hidden_dim=f.predictor_hidden_dim or None,
                  mix_target=f.mix_target, tau=f.tau, tau_schedule=f.tau_schedule,
                  total_steps=f.epochs * steps_per_epoch)
    allowed = models.framework_options(f.framework)
    return {name: value for name, value in values.items() if name in allowed}


def build_trainer(image_shape, steps_per_epoch, num_classes=0):
    """The trainer the flags describe (the backbone seeded by --seed).

    With --online_probe, a linear probe over `num_classes` with Adam(--probe_learning_rate).
    """
    import keras

    from mixmask_tf import models

    keras.mixed_precision.set_dtype_policy(FLAGS.mixed_precision)
    keras.utils.set_random_seed(FLAGS.seed)
    probe = {}
    if FLAGS.online_probe:
        probe = dict(probe_classes=num_classes, probe_optimizer=keras.optimizers.Adam(FLAGS.probe_learning_rate))
    return models.build_trainer(FLAGS.framework, build_backbone(image_shape), branch=build_branch(),
                                seed=FLAGS.seed, **probe, **framework_flag_options(steps_per_epoch))


def build_optimizer(steps_per_epoch, model):
    import keras

    total = FLAGS.epochs * steps_per_epoch
    warmup = FLAGS.warmup_epochs * steps_per_epoch
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup, 1), warmup_target=FLAGS.learning_rate, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, decay_steps=max(total, 1))
    if FLAGS.optimizer == "lars":
        from mixmask_tf.optimizers import LARS, excluded_variables

        return LARS(schedule, momentum=FLAGS.sgd_momentum, weight_decay=FLAGS.weight_decay, eta=FLAGS.lars_eta,
                    exclude=excluded_variables(model))
    from mixmask_tf.optimizers import with_decay_exclusions

    if FLAGS.optimizer == "sgd" and FLAGS.weight_decay_style == "l2":
        from mixmask_tf.optimizers import SGDL2, excluded_variables

        exclude = excluded_variables(model) if FLAGS.exclude_norm_and_bias_from_decay else ()
        return SGDL2(schedule, momentum=FLAGS.sgd_momentum, l2=FLAGS.weight_decay, exclude=exclude)
    if FLAGS.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=FLAGS.sgd_momentum, weight_decay=FLAGS.weight_decay or None)
    else:
        optimizer = keras.optimizers.Adam(schedule, weight_decay=FLAGS.weight_decay or None)
    return with_decay_exclusions(optimizer, model) if FLAGS.exclude_norm_and_bias_from_decay else optimizer


def probe_epochs(every, epochs):
    """The 1-based epochs at which the KnnMonitor (and with it the online probe) evaluates."""
    return [e for e in range(1, epochs + 1) if (every and e % every == 0) or e == epochs]


def verbosity():
    if FLAGS.verbose >= 0:
        return FLAGS.verbose
    return 1 if sys.stdout.isatty() else 0


def write_run_files(model_dir, info, image_shape, two_views):
    from mixmask_tf import checkpoint

    checkpoint.atomic_write_text(os.path.join(model_dir, "flags.cfg"), FLAGS.flags_into_string())
    config = {"framework": FLAGS.framework, "branch": build_branch().get_config(), "backbone": FLAGS.backbone,
              "framework_options": {k: v for k, v in framework_flag_options(1).items() if k != "total_steps"},
              "dataset": FLAGS.dataset, "image_shape": list(image_shape), "num_classes": info.num_classes,
              "mean": list(info.mean), "std": list(info.std), "epochs": FLAGS.epochs,
              "batch_size": FLAGS.batch_size, "seed": FLAGS.seed, "mixed_precision": FLAGS.mixed_precision,
              "augment": {"preset": FLAGS.augment, "view1": dataclasses.asdict(two_views.view1),
                          "view2": dataclasses.asdict(two_views.view2)}}
    if FLAGS.online_probe:
        config["online_probe"] = {"classes": info.num_classes, "learning_rate": FLAGS.probe_learning_rate}
    checkpoint.atomic_write_text(os.path.join(model_dir, "config.json"), json.dumps(config, indent=2))


def run():
    import keras

    from export import saved_model
    from mixmask_tf import augment, checkpoint, data, knn, visualize
    from trainers import callbacks, progress

    validate_flags()
    model_dir = FLAGS.model_dir
    os.makedirs(model_dir, exist_ok=True)
    train_source, test_source, no_knn = data_flags.open_sources()
    info = train_source.info
    image_shape = tuple(int(d) for d in info.image_shape)
    print(f"data: {train_source.description}", flush=True)
    if test_source is not None:
        print(f"data: {test_source.description}", flush=True)
    else:
        print(f"kNN monitor off: {no_knn}", flush=True)
    data_flags.report_skipped(model_dir, [train_source, test_source])
    if FLAGS.online_probe and not (train_source.labeled and info.num_classes > 0):
        raise UserError(f"--online_probe needs a labeled train split: {train_source.description} has no labels "
                        "(use a labeled dataset or split, or drop --online_probe)")
    if train_source.num_examples < FLAGS.batch_size:
        raise UserError(f"--batch_size {FLAGS.batch_size} exceeds the {train_source.num_examples} training images")
    view1, view2 = augment.preset_views(FLAGS.augment, image_shape[:2], image_shape[2])
    scale = crop_scale()
    if scale is not None:
        view1, view2 = (dataclasses.replace(v, crop_scale=scale) for v in (view1, view2))
    two_views = augment.TwoViewAugment(view1, view2, info.mean, info.std)
    steps = train_source.num_examples // FLAGS.batch_size
    if FLAGS.steps_per_epoch:
        steps = min(steps, FLAGS.steps_per_epoch)

    def preprocess(image):
        return augment.eval_preprocess(image, info.mean, info.std)

    bank_ds = test_ds = None
    if test_source is not None:
        bank_ds = data.make_eval_dataset(train_source, None, 512, preprocess)
        test_ds = data.make_eval_dataset(test_source, None, 512, preprocess)

    model = build_trainer(image_shape, steps, info.num_classes)
    model.compile(optimizer=build_optimizer(steps, model), jit_compile=FLAGS.jit_compile)
    write_run_files(model_dir, info, image_shape, two_views)

    results_path = os.path.join(model_dir, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)
    initial_epoch = 0
    last = checkpoint.latest(os.path.join(model_dir, "checkpoints"))
    if last:
        initial_epoch = checkpoint.restore(model, last)
        callbacks.truncate_metrics_log(model_dir, initial_epoch)
        print(f"resumed from {last} (epoch {initial_epoch}, step {int(model.optimizer.iterations.numpy())})",
              flush=True)
    # Epoch e's batches depend on (seed, e) only, so a resumed run sees what an uninterrupted one would.
    train_ds = data.make_pretrain_dataset(train_source, FLAGS.batch_size, two_views, seed=FLAGS.seed,
                                          start_epoch=initial_epoch, steps_per_epoch=steps,
                                          with_labels=FLAGS.online_probe)
    if bank_ds is not None and FLAGS.random_init_knn and "knn_top1_random_init" not in results and not last:
        # The honest control: the same architecture, same initialisation, no training.
        results["knn_top1_random_init"] = knn.evaluate_encoder(
            model.backbone, bank_ds, test_ds, info.num_classes, FLAGS.knn_k, FLAGS.knn_t)
        checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
        print(f"random init: kNN top-1 {results['knn_top1_random_init']:.2f}%", flush=True)

    sample = next(iter(data.make_pretrain_dataset(train_source, FLAGS.batch_size, two_views, seed=FLAGS.seed,
                                                  start_epoch=0, steps_per_epoch=1)))
    montage_path = os.path.join(model_dir, "masks.png")
    if FLAGS.plots and not os.path.exists(montage_path):
        visualize.save_mask_montage_png(montage_path, sample[:, 0].numpy(), seed=FLAGS.seed,
                                        grid_size=FLAGS.grid_size, ratio=FLAGS.mask_ratio, mean=info.mean,
                                        std=info.std)
    monitor = callbacks.KnnMonitor(bank_ds, test_ds, info.num_classes, FLAGS.knn_every, FLAGS.epochs,
                                   FLAGS.knn_k, FLAGS.knn_t) if bank_ds is not None else None
    # Order matters: the callbacks that add to `logs` (kNN, learning rate) come before the ones that
    # record them (metrics.jsonl, TensorBoard), and the checkpoint comes last.
    fit_callbacks = [c for c in (monitor, callbacks.LearningRateLogger(), progress.EpochSummary(FLAGS.epochs),
                                 callbacks.MetricsLog(model_dir)) if c is not None]
    if FLAGS.plots:
        fit_callbacks.append(callbacks.PlotCurves(model_dir))
    if FLAGS.tensorboard:
        log_dir = os.path.join(model_dir, "tensorboard")
        fit_callbacks += [keras.callbacks.TensorBoard(log_dir, update_freq="epoch", write_graph=False),
                          callbacks.MixedViewSummary(log_dir, sample[:8].numpy(), mean=info.mean, std=info.std)]
    fit_callbacks.append(callbacks.Checkpoint(model_dir))
    validation = {}
    if FLAGS.online_probe and test_ds is not None:
        # The probe is validated at the kNN monitor's epochs (every --knn_every, and the last).
        validation = dict(validation_data=test_ds, validation_freq=probe_epochs(FLAGS.knn_every, FLAGS.epochs))
    elif FLAGS.online_probe:
        print(f"online probe: trained, not validated ({no_knn})", flush=True)
    start = time.time()
    if initial_epoch < FLAGS.epochs:
        print(f"pretraining {FLAGS.framework} + {FLAGS.branch} on {FLAGS.dataset} ({train_source.num_examples} "
              f"images, {steps} steps/epoch, epochs {initial_epoch + 1}..{FLAGS.epochs})"
              + (" with an online linear probe" if FLAGS.online_probe else ""), flush=True)
        history = model.fit(train_ds, epochs=FLAGS.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                            shuffle=False, verbose=verbosity(), callbacks=fit_callbacks, **validation)
        for key in ("probe_top1", "probe_top5"):
            values = history.history.get(f"val_{key}")
            if values:
                results[key] = float(values[-1])
    if getattr(model, "nan_stopped", False):
        raise UserError("training stopped on a non-finite loss; the last good checkpoint is kept in "
                        f"{os.path.join(model_dir, 'checkpoints')} (lower --learning_rate?)")
    results.update({"epochs_completed": FLAGS.epochs, "steps_completed": int(model.optimizer.iterations.numpy()),
                    "train_seconds_this_run": round(time.time() - start, 1)})
    summary = "pretraining done"
    if monitor is not None:
        if monitor.last is None:
            monitor.last = monitor.evaluate()
        results.update({"knn_top1": monitor.last, "knn_k": FLAGS.knn_k, "knn_t": FLAGS.knn_t})
        summary = f"kNN top-1 on {FLAGS.dataset} {FLAGS.test_split}: pretrained {results['knn_top1']:.2f}%"
        if "knn_top1_random_init" in results:
            summary += f" | random init (same architecture) {results['knn_top1_random_init']:.2f}%"
    if "probe_top1" in results and FLAGS.online_probe:
        summary += f" | online linear probe top-1 {results['probe_top1']:.2f}%"
    checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
    print(summary, flush=True)
    if FLAGS.export:
        export_dir = FLAGS.export_dir or os.path.join(model_dir, "export")
        path = saved_model.export_from_model_dir(model_dir, export_dir)
        print(f"exported SavedModel to {path}", flush=True)


def main(argv):
    if len(argv) > 1:
        print(f"pretrain: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    from mixmask_tf import checkpoint, data

    if FLAGS.verbosity <= 0:  # absl's -v flag: INFO only when asked for
        logging.set_verbosity(logging.WARNING)
    try:
        run()
    except (UserError, ValueError, FileExistsError, data.DatasetNotFoundError, data.CorruptDatasetError,
            checkpoint.CheckpointMismatchError) as e:
        logging.debug("error", exc_info=True)
        print(f"pretrain: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
