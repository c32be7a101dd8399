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

from . import export_module, train_step_threads

train_step_threads()  # before TensorFlow is imported

# The flag groups define every flag of this command (none of them imports TensorFlow).
from .flag_groups import UserError  # noqa: E402
from .flag_groups import augmentation as augmentation_flags  # noqa: E402
from .flag_groups import branch as branch_flags  # noqa: E402
from .flag_groups import data as data_flags  # noqa: E402
from .flag_groups import distribute as distribute_flags  # noqa: E402
from .flag_groups import framework as framework_flags  # noqa: E402
from .flag_groups import model as model_flags  # noqa: E402
from .flag_groups import optimisation as optimisation_flags  # noqa: E402
from .flag_groups import run as run_flags  # noqa: E402

FLAGS = flags.FLAGS
# Exit status of a run stopped by SIGTERM after saving (128 + 15, as a shell reports it): not 0,
# so that a scheduler knows the job is not done and starts it again.
PREEMPTED_EXIT_CODE = 143
# Exit status when another worker of a multi-worker run was lost.
LOST_WORKER_EXIT_CODE = 3


def validate_flags():
    """Checks flag combinations that absl's types cannot, group by group; raises UserError."""
    run_flags.validate()
    distribute_flags.validate()
    optimisation_flags.validate()
    model_flags.validate()
    framework_flags.validate()
    data_flags.validate_data_flags()
    augmentation_flags.validate()
    branch_flags.validate()


def build_trainer(image_shape, steps_per_epoch, num_classes=0, branch=None):
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
    return models.build_trainer(FLAGS.framework, model_flags.build_backbone(image_shape),
                                branch=branch if branch is not None else branch_flags.build_branch(), seed=FLAGS.seed,
                                **probe,
                                **framework_flags.framework_options(steps_per_epoch))


def write_run_files(model_dir, info, image_shape, two_views, eval_crop_ratio=1.0, input_filter=None, branch=None):
    from mixmask_tf import checkpoint

    checkpoint.atomic_write_text(os.path.join(model_dir, "flags.cfg"), FLAGS.flags_into_string())
    branch = branch if branch is not None else branch_flags.build_branch()
    config = {"framework": FLAGS.framework, "branch": branch.get_config(),
              # Applied to every image the encoder sees, in training and afterwards (evaluation, export).
              "input_filter": input_filter.as_dict() if input_filter is not None else None,
              "backbone": FLAGS.backbone,
              "framework_options": {k: v for k, v in framework_flags.framework_options(1).items()
                                    if k != "total_steps"},
              "dataset": FLAGS.dataset, "image_shape": list(image_shape), "num_classes": info.num_classes,
              "mean": list(info.mean), "std": list(info.std), "epochs": FLAGS.epochs,
              "batch_size": FLAGS.batch_size, "seed": FLAGS.seed, "mixed_precision": FLAGS.mixed_precision,
              "eval_crop_ratio": eval_crop_ratio,
              "augment": {"preset": FLAGS.augment, "view1": dataclasses.asdict(two_views.view1),
                          "view2": dataclasses.asdict(two_views.view2), "extra_views": two_views.extra_views}}
    if FLAGS.online_probe:
        config["online_probe"] = {"classes": info.num_classes, "learning_rate": FLAGS.probe_learning_rate}
    checkpoint.atomic_write_text(os.path.join(model_dir, "config.json"), json.dumps(config, indent=2))


def _fit_phases(initial_epoch, start_step, epochs):
    """(first epoch, first step) of each `fit` call: the rest of a resumed epoch, then whole epochs."""
    phases = [(initial_epoch, start_step)] if start_step else []
    first_whole = initial_epoch + (1 if start_step else 0)
    if first_whole < epochs:
        phases.append((first_whole, 0))
    return phases


def run():
    import math

    import tensorflow as tf

    from mixmask_tf import augment, checkpoint, data, distribute, encoders, knn, visualize

    from . import callbacks, progress

    saved_model = export_module("saved_model")

    validate_flags()  # again, for callers of run() other than main (cheap)
    # The strategy first: collectives and the logical CPU split are set up before other TF work.
    strategy = distribute_flags.build_strategy()
    worker = distribute.worker_of(strategy)
    chief = worker.is_chief
    say = print if chief else (lambda *a, **k: None)
    model_dir = FLAGS.model_dir
    tf.io.gfile.makedirs(model_dir)
    train_source, test_source, no_knn = data_flags.open_sources()
    info = train_source.info
    image_shape = tuple(int(d) for d in info.image_shape)
    say(f"data: {train_source.description}", flush=True)
    if test_source is not None:
        say(f"data: {test_source.description}", flush=True)
    else:
        say(f"kNN monitor off: {no_knn}", flush=True)
    if chief:
        data_flags.report_skipped(model_dir, [train_source, test_source])
    if FLAGS.online_probe and not (train_source.labeled and info.num_classes > 0):
        raise UserError(f"--online_probe needs a labeled train split: {train_source.description} has no labels "
                        "(use a labeled dataset or split, or drop --online_probe)")
    if FLAGS.online_probe and worker.count > 1:
        raise UserError("--online_probe is not available with several workers (Keras' multi-worker fit cannot "
                        "take (views, labels) batches); run the linear evaluation after pretraining instead")
    if train_source.num_examples < FLAGS.batch_size:
        raise UserError(f"--batch_size {FLAGS.batch_size} exceeds the {train_source.num_examples} training images")
    replicas = strategy.num_replicas_in_sync
    try:
        per_replica = distribute.check_global_batch(FLAGS.batch_size, replicas)
    except distribute.StrategyError as e:
        raise UserError(str(e)) from e
    branch = branch_flags.build_branch(mean=info.mean, std=info.std)
    two_views = augmentation_flags.two_view_augment(image_shape, info.mean, info.std, branch.extra_views)
    steps = train_source.num_examples // FLAGS.batch_size
    if FLAGS.steps_per_epoch:
        steps = min(steps, FLAGS.steps_per_epoch)
    execution = run_flags.steps_per_execution(steps)
    if execution != FLAGS.steps_per_execution:
        say(f"steps per execution: {execution} (the largest divisor of the {steps} steps per epoch up to "
            f"--steps_per_execution={FLAGS.steps_per_execution})", flush=True)
    name = {"_DefaultDistributionStrategy": "one device", "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"
            }.get(type(strategy).__name__, type(strategy).__name__)
    say(f"strategy: {name}, {replicas} replica(s) on {worker.count} worker(s), global batch "
        f"{FLAGS.batch_size} ({per_replica} per replica), peak learning rate "
        f"{optimisation_flags.learning_rate(FLAGS.batch_size):.6g}", flush=True)

    def preprocess(image):
        return augment.eval_preprocess(image, info.mean, info.std)

    bank_ds = test_ds = None
    if test_source is not None and chief:
        bank_ds = data.make_eval_dataset(train_source, None, 512, preprocess)
        test_ds = data.make_eval_dataset(test_source, None, 512, preprocess)

    with strategy.scope():
        model = build_trainer(image_shape, steps, info.num_classes, branch)
        model.watch_stop_requests = True
        model.compile(optimizer=optimisation_flags.build_optimizer(steps, model), jit_compile=FLAGS.jit_compile,
                      steps_per_execution=execution)
    if chief:
        write_run_files(model_dir, info, image_shape, two_views, train_source.crop_ratio, model.input_filter,
                        model.branch)
    saver = checkpoint.TrainingCheckpoint(model, os.path.join(model_dir, "checkpoints"), keep=FLAGS.keep_checkpoints,
                                          is_chief=chief, worker_id=worker.task_id or 0)
    results_path = os.path.join(model_dir, "results.json")
    results = json.loads(checkpoint.read_text(results_path, "{}"))
    initial_epoch = start_step = 0
    last = saver.latest()
    if last:
        initial_epoch, start_step = saver.restore(last)
        if chief:
            callbacks.truncate_metrics_log(model_dir, initial_epoch)
        where = f"epoch {initial_epoch}" + (f" + {start_step} steps" if start_step else "")
        say(f"resumed from {last} ({where}, step {int(model.optimizer.iterations.numpy())})"
            + (" (a checkpoint of the old .npz format; new ones are TensorFlow checkpoints)"
               if checkpoint.is_legacy(last) else ""), flush=True)
    if bank_ds is not None and FLAGS.random_init_knn and "knn_top1_random_init" not in results and not last:
        # The honest control: the same architecture, same initialisation, no training.
        results["knn_top1_random_init"] = knn.evaluate_encoder(
            encoders.feature_model(model, FLAGS.knn_feature), bank_ds, test_ds, info.num_classes, FLAGS.knn_k,
            FLAGS.knn_t)
        results["knn_feature_random_init"] = FLAGS.knn_feature
        checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
        print(f"random init: kNN top-1 {results['knn_top1_random_init']:.2f}%"
              + (f" (kNN of the {FLAGS.knn_feature} output)" if FLAGS.knn_feature != "backbone" else ""), flush=True)

    def make_shard(index, count, start_epoch, first_step):
        # Epoch e's batches depend on (seed, e) only, and each worker builds its rows of every global
        # batch: a resumed run, on any number of workers, sees what an uninterrupted one would.
        return data.make_pretrain_dataset(train_source, FLAGS.batch_size, two_views, seed=FLAGS.seed,
                                          start_epoch=start_epoch, steps_per_epoch=steps,
                                          with_labels=FLAGS.online_probe, shard=(index, count) if count > 1 else None,
                                          start_step=first_step)

    stop = callbacks.StopOnSignal()
    ckpt = callbacks.Checkpoint(saver, model_dir, steps, stop=stop, is_chief=chief)
    monitor = metrics_log = None
    fit_callbacks = [stop]
    if chief:
        sample = next(iter(make_shard(0, 1, 0, 0)))
        sample = sample[0] if isinstance(sample, tuple) else sample
        montage_path = os.path.join(model_dir, "masks.png")
        if FLAGS.plots and not tf.io.gfile.exists(montage_path):
            if model.branch.changes_views:  # MSCN: every view, as augmented and as the network is given it
                visualize.save_views_montage_png(montage_path, sample.numpy(), model.branch, seed=FLAGS.seed,
                                                 mean=info.mean, std=info.std)
            else:
                visualize.save_mask_montage_png(montage_path, sample[:, 0].numpy(), seed=FLAGS.seed,
                                                grid_size=FLAGS.grid_size, ratio=FLAGS.mask_ratio, mean=info.mean,
                                                std=info.std)
        monitor = callbacks.KnnMonitor(bank_ds, test_ds, info.num_classes, FLAGS.knn_every, FLAGS.epochs,
                                       FLAGS.knn_k, FLAGS.knn_t, feature=FLAGS.knn_feature
                                       ) if bank_ds is not None else None
        metrics_log = callbacks.MetricsLog(model_dir, knn_feature=FLAGS.knn_feature if monitor is not None else None)
        # Order matters: the callbacks that add to `logs` (kNN, learning rate) come before the ones that
        # record them (metrics.jsonl, TensorBoard), and the checkpoint comes last.
        fit_callbacks += [c for c in (monitor, callbacks.LearningRateLogger(), progress.EpochSummary(FLAGS.epochs),
                                      metrics_log) if c is not None]
        if FLAGS.plots:
            fit_callbacks.append(callbacks.PlotCurves(model_dir))
        if FLAGS.tensorboard:
            log_dir = os.path.join(model_dir, "tensorboard")
            fit_callbacks += [callbacks.EpochTensorBoard(log_dir, update_freq="epoch", write_graph=False),
                              callbacks.MixedViewSummary(log_dir, sample[:8].numpy(), mean=info.mean, std=info.std)]
    fit_callbacks.append(ckpt)
    validation = {}
    if FLAGS.online_probe and test_source is not None:
        # The probe is validated at the kNN monitor's epochs (every --knn_every, and the last).
        validation = dict(validation_data=data.make_eval_dataset(test_source, None, 512, preprocess),
                          validation_freq=run_flags.probe_epochs(FLAGS.knn_every, FLAGS.epochs))
    elif FLAGS.online_probe:
        say(f"online probe: trained, not validated ({no_knn})", flush=True)
    start = time.time()
    if initial_epoch < FLAGS.epochs:
        say(f"pretraining {FLAGS.framework} + {FLAGS.branch} on {FLAGS.dataset} ({train_source.num_examples} "
            f"images, {steps} steps/epoch, epochs {initial_epoch + 1}..{FLAGS.epochs})"
            + (" with an online linear probe" if FLAGS.online_probe else ""), flush=True)
    for first_epoch, first_step in _fit_phases(initial_epoch, start_step, FLAGS.epochs):
        phase_steps = steps - first_step
        # A resumed epoch's remainder is a multiple of the steps per execution unless the flag changed.
        model.steps_per_execution = math.gcd(execution, phase_steps)
        model.train_function = None
        train_ds = distribute.distribute_pretrain_dataset(
            strategy, lambda i, n, e=first_epoch, s=first_step: make_shard(i, n, e, s), FLAGS.batch_size)
        ckpt.step_offset = first_step
        if metrics_log is not None and first_step:
            metrics_log.note = {"resumed_at_step": first_step}
        history = model.fit(train_ds, epochs=first_epoch + 1 if first_step else FLAGS.epochs,
                            initial_epoch=first_epoch, steps_per_epoch=phase_steps, shuffle=False,
                            verbose=run_flags.verbosity(), callbacks=fit_callbacks, **validation)
        for key in ("probe_top1", "probe_top5"):
            values = history.history.get(f"val_{key}")
            if values:
                results[key] = float(values[-1])
        if ckpt.preempted or getattr(model, "nan_stopped", False):
            break
    if getattr(model, "nan_stopped", False):
        raise UserError("training stopped on a non-finite loss; the last good checkpoint is kept in "
                        f"{os.path.join(model_dir, 'checkpoints')} (lower --learning_rate?)")
    if ckpt.preempted:
        epoch, step = ckpt.preempted
        print(f"stopped on a termination signal: saved a checkpoint at epoch {epoch}"
              + (f" + {step} steps" if step else "") + f" in {os.path.join(model_dir, 'checkpoints')}; "
              "run the same command again to resume", flush=True)
        sys.exit(PREEMPTED_EXIT_CODE)
    if not chief:
        print(f"worker {worker.index}: pretraining done", flush=True)
        return
    results.update({"epochs_completed": FLAGS.epochs, "steps_completed": int(model.optimizer.iterations.numpy()),
                    "train_seconds_this_run": round(time.time() - start, 1)})
    summary = "pretraining done"
    if monitor is not None:
        if monitor.last is None:
            monitor.last = monitor.evaluate()
        results.update({"knn_top1": monitor.last, "knn_k": FLAGS.knn_k, "knn_t": FLAGS.knn_t,
                        "knn_feature": FLAGS.knn_feature})
        summary = f"kNN top-1 on {FLAGS.dataset} {FLAGS.test_split}: pretrained {results['knn_top1']:.2f}%"
        if "knn_top1_random_init" in results:
            summary += f" | random init (same architecture) {results['knn_top1_random_init']:.2f}%"
            if results.get("knn_feature_random_init", "backbone") != FLAGS.knn_feature:
                summary += f" of the {results.get('knn_feature_random_init', 'backbone')} output"
        if FLAGS.knn_feature != "backbone":
            summary += f" (kNN of the {FLAGS.knn_feature} output)"
    if "probe_top1" in results and FLAGS.online_probe:
        summary += f" | online linear probe top-1 {results['probe_top1']:.2f}%"
    checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
    print(summary, flush=True)
    if FLAGS.export:
        export_dir = FLAGS.export_dir or os.path.join(model_dir, "export")
        path = saved_model.export_from_model_dir(model_dir, export_dir, max_image_pixels=FLAGS.max_image_pixels)
        print(f"exported SavedModel to {path}", flush=True)


def main(argv):
    """The command: runs pretraining with the parsed flags; exits 2 with one line on a user error."""
    if len(argv) > 1:
        print(f"pretrain: error: unexpected arguments {argv[1:]} (flags are --name=value)", file=sys.stderr)
        sys.exit(2)
    try:
        validate_flags()  # before TensorFlow is imported: a bad flag combination fails in a fraction of a second
    except UserError as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        sys.exit(2)
    import tensorflow as tf

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
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError) as e:
        # Another worker died (or the network failed): a collective cannot complete.
        logging.debug("error", exc_info=True)
        first = (e.message or str(e)).strip().splitlines()[0][:300] if (e.message or str(e)) else type(e).__name__
        print(f"pretrain: error: lost contact with another worker ({type(e).__name__}: {first}). Every worker "
              "stops; run every worker's command again to resume from the last checkpoint", file=sys.stderr)
        sys.exit(LOST_WORKER_EXIT_CODE)


def entry_point():
    """The console script `mixmask-pretrain`."""
    app.run(main)


if __name__ == "__main__":
    entry_point()
