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
from .flag_groups import service as service_flags  # noqa: E402

FLAGS = flags.FLAGS
# Exit status of a run stopped by SIGTERM after saving (128 + 15, as a shell reports it): not 0,
# so that a scheduler knows the job is not done and starts it again.
PREEMPTED_EXIT_CODE = 143
# Exit status when another worker of a multi-worker run was lost.
LOST_WORKER_EXIT_CODE = 3


# Flags that fix what a run's checkpoints hold (which weights, of which shapes, for which data): a
# run folder with checkpoints refuses a rerun with other values, before writing anything.
RUN_IDENTITY_FLAGS = ("dataset", "image_size", "channels", "framework", "branch", "backbone", "width", "depth",
                      "pool_grid", "embedding_dim", "hidden_dim", "projector_layers", "predictor_hidden_dim",
                      "queue_size", "online_probe", "mixed_precision")
# Exit status when a run file could not be written (a full disk, a quota, a read-only folder):
# sysexits' EX_IOERR. What was written before is intact; the same command finishes the run later.
WRITE_FAILED_EXIT_CODE = 74


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
    service_flags.validate()


def build_trainer(image_shape, steps_per_epoch, num_classes=0, branch=None, device_augment=None):
    """The trainer the flags describe (the backbone seeded by --seed).

    With --online_probe, a linear probe over `num_classes` with Adam(--probe_learning_rate);
    with `device_augment` (a TwoViewAugment), the views are finished inside the step.
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
                                device_augment=device_augment, **probe,
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


def _flag_lines(text):
    """{flag name: its line} of a flags.cfg ("--name=value", "--name" or "--noname")."""
    lines = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        name = line[2:].split("=", 1)[0]
        if "=" not in line and name not in FLAGS and name.startswith("no") and name[2:] in FLAGS:
            name = name[2:]
        lines[name] = line
    return lines


def check_same_run(model_dir, checkpoints):
    """Raises UserError when a flag of RUN_IDENTITY_FLAGS differs from the run that wrote `checkpoints`
    in `model_dir` (read from its flags.cfg), naming the first such flag."""
    from mixmask_tf import checkpoint

    text = checkpoint.read_text(os.path.join(model_dir, "flags.cfg")) if checkpoints else None
    if text is None:
        return
    old = _flag_lines(text)
    for name in RUN_IDENTITY_FLAGS:
        now = FLAGS[name].serialize()
        if name in old and old[name] != now:
            raise UserError(f"{model_dir} holds a run with {old[name]}, whose checkpoints cannot continue with "
                            f"{now}; rerun with the run's flags ({os.path.join(model_dir, 'flags.cfg')}) or use "
                            "another --model_dir")


def _step_of(path):
    """The global step in a checkpoint's name (`ckpt-<step>`), or None (a legacy `.npz`)."""
    tail = os.path.basename(path).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _results_complete(results, epochs, step):
    """Whether results.json is the final one of a run that ended at (epochs, step)."""
    return step is not None and results.get("epochs_completed") == epochs and results.get("steps_completed") == step


def _recorded_export(results, export_dir, model_dir, step):
    """The export version folder of the run's state at `step`, or None.

    The version that results.json records for `step` (under the same --export_dir; the default one
    moves with the run folder), else one whose model card says it was exported from `model_dir` at
    `step` (an export that a kill interrupted before results.json recorded it).
    """
    from mixmask_tf import checkpoint

    saved_model = export_module("saved_model")
    if step is None:
        return None
    versions = saved_model.list_versions(export_dir)
    record = results.get("export") or {}
    if (record.get("steps") == step and record.get("export_dir") == (FLAGS.export_dir or "")
            and record.get("version") in versions):
        return os.path.join(export_dir, str(record["version"]))
    source = model_dir if "://" in model_dir else os.path.abspath(model_dir)
    for version in reversed(versions):
        folder = os.path.join(export_dir, str(version))
        try:
            card = json.loads(checkpoint.read_text(os.path.join(folder, "assets.extra", "export.json"), "{}"))
        except ValueError:
            continue
        if card.get("model_dir") == source and card.get("steps") == step:
            return folder
    return None


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
    if FLAGS.data_service:
        data.service.check_reachable(FLAGS.data_service)  # TensorFlow would retry for a long time, silently
    say = print if chief else (lambda *a, **k: None)
    model_dir = FLAGS.model_dir
    results_path = os.path.join(model_dir, "results.json")
    export_dir = FLAGS.export_dir or os.path.join(model_dir, "export")
    # A rerun: refuse flags the checkpoints cannot continue under, and stop at once (one line, exit 0)
    # when the run has nothing left to do; both before anything is written.
    existing = checkpoint.list_checkpoints(os.path.join(model_dir, "checkpoints"))
    check_same_run(model_dir, existing)
    finished = False
    if existing:
        done_epochs, _ = checkpoint.progress_of(existing[-1])
        if done_epochs > FLAGS.epochs:
            raise UserError(f"{model_dir} has trained {done_epochs} epochs ({existing[-1]}), more than "
                            f"--epochs={FLAGS.epochs}; rerun with --epochs={done_epochs} or more, or use another "
                            "--model_dir")
        finished = done_epochs == FLAGS.epochs
    if finished:
        step = _step_of(existing[-1])
        if not chief:
            print(f"worker {worker.index}: pretraining done", flush=True)
            return
        results = json.loads(checkpoint.read_text(results_path, "{}"))
        export_path = _recorded_export(results, export_dir, model_dir, step) if FLAGS.export else None
        if _results_complete(results, FLAGS.epochs, step) and (export_path or not FLAGS.export):
            print(f"nothing to do: {model_dir} has completed its {FLAGS.epochs} epochs ({existing[-1]}); results in "
                  f"{results_path}" + (f"; export {export_path}" if export_path else ""), flush=True)
            return
    with checkpoint.writing(f"the run folder {model_dir}"):
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
    augment_on = augmentation_flags.augment_on(strategy)
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
    say("augmentation: " + ("crops on the host (uint8), the rest inside the train step" if augment_on == "device"
                            else "on the host, in tf.data") + (" (--augment_on=auto)" if FLAGS.augment_on == "auto"
                                                               else ""), flush=True)

    def preprocess(image):
        return augment.eval_preprocess(image, info.mean, info.std)

    bank_ds = test_ds = None
    if test_source is not None and chief:
        bank_ds = data.make_eval_dataset(train_source, None, 512, preprocess)
        test_ds = data.make_eval_dataset(test_source, None, 512, preprocess)

    with strategy.scope():
        model = build_trainer(image_shape, steps, info.num_classes, branch,
                              device_augment=two_views if augment_on == "device" else None)
        model.watch_stop_requests = True
        model.compile(optimizer=optimisation_flags.build_optimizer(steps, model), jit_compile=FLAGS.jit_compile,
                      steps_per_execution=execution)
    if chief and not (finished and tf.io.gfile.exists(os.path.join(model_dir, "config.json"))):
        with checkpoint.writing(f"the run's flags.cfg and config.json in {model_dir}"):
            write_run_files(model_dir, info, image_shape, two_views, train_source.crop_ratio, model.input_filter,
                            model.branch)
    saver = checkpoint.TrainingCheckpoint(model, os.path.join(model_dir, "checkpoints"), keep=FLAGS.keep_checkpoints,
                                          is_chief=chief, worker_id=worker.task_id or 0)
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
        with checkpoint.writing(results_path):
            checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
        print(f"random init: kNN top-1 {results['knn_top1_random_init']:.2f}%"
              + (f" (kNN of the {FLAGS.knn_feature} output)" if FLAGS.knn_feature != "backbone" else ""), flush=True)

    def make_shard(index, count, start_epoch, first_step, served=False):
        # Epoch e's batches depend on (seed, e) only, and each worker builds its rows of every global
        # batch: a resumed run, on any number of workers, sees what an uninterrupted one would.
        # `served`: the same batches, built by the tf.data service's workers, one batch per split.
        ds = data.make_pretrain_dataset(train_source, FLAGS.batch_size, two_views, seed=FLAGS.seed,
                                        start_epoch=start_epoch, steps_per_epoch=steps,
                                        with_labels=FLAGS.online_probe, shard=(index, count) if count > 1 else None,
                                        start_step=first_step, augment_on=augment_on,
                                        split_batches=served)
        return data.service.distribute(ds, FLAGS.data_service) if served else ds

    stop = callbacks.StopOnSignal()
    ckpt = callbacks.Checkpoint(saver, model_dir, steps, stop=stop, is_chief=chief)
    monitor = metrics_log = None
    fit_callbacks = [stop]
    if chief and not finished:
        sample = next(iter(make_shard(0, 1, 0, 0)))
        sample = sample[0] if isinstance(sample, tuple) else sample
        if augment_on == "device":  # what the network is given: the views as the step finishes them
            sample = two_views.on_device(sample)
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
    if FLAGS.data_service:
        say(f"input: the tf.data service at {FLAGS.data_service} (dynamic sharding: each batch is built by one "
            "of its workers)", flush=True)
    start = time.time()
    if initial_epoch < FLAGS.epochs:
        say(f"pretraining {FLAGS.framework} + {FLAGS.branch} on {FLAGS.dataset} ({train_source.num_examples} "
            f"images, {steps} steps/epoch, epochs {initial_epoch + 1}..{FLAGS.epochs})"
            + (" with an online linear probe" if FLAGS.online_probe else ""), flush=True)
    for first_epoch, first_step in ([] if finished else _fit_phases(initial_epoch, start_step, FLAGS.epochs)):
        phase_steps = steps - first_step
        # A resumed epoch's remainder is a multiple of the steps per execution unless the flag changed.
        model.steps_per_execution = math.gcd(execution, phase_steps)
        model.train_function = None
        train_ds = distribute.distribute_pretrain_dataset(
            strategy, lambda i, n, e=first_epoch, s=first_step: make_shard(i, n, e, s, bool(FLAGS.data_service)),
            FLAGS.batch_size)
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
    step = int(model.optimizer.iterations.numpy())
    if not _results_complete(results, FLAGS.epochs, step):
        _complete_results(model, results, step, monitor if not finished else None,
                          None if finished else round(time.time() - start, 1), bank_ds, test_ds, info)
    else:
        print(f"results of the {FLAGS.epochs} epochs already in {results_path}", flush=True)
    if FLAGS.export:
        path = _recorded_export(results, export_dir, model_dir, step)
        if path is None:
            with checkpoint.writing(f"the SavedModel export in {export_dir}"):
                path = saved_model.export_from_model_dir(model_dir, export_dir,
                                                         max_image_pixels=FLAGS.max_image_pixels)
            print(f"exported SavedModel to {path}", flush=True)
        else:
            print(f"export of this state already in {path}", flush=True)
        results["export"] = {"version": int(os.path.basename(os.path.normpath(path))), "steps": step,
                             "export_dir": FLAGS.export_dir or "", "path": path}
        with checkpoint.writing(results_path):
            checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))


def _complete_results(model, results, step, monitor, train_seconds, bank_ds, test_ds, info):
    """Writes the final results.json of the run (and prints its summary line).

    `monitor` is the kNN monitor of a run that trained now (its last evaluation is reused), None for
    a rerun of a run that had finished training but not its results: that rerun writes
    `backbone.keras` again from the restored checkpoint (a kill may have left the previous epoch's)
    and evaluates the kNN afresh.
    """
    from mixmask_tf import checkpoint, encoders, knn

    model_dir = FLAGS.model_dir
    results_path = os.path.join(model_dir, "results.json")
    if monitor is None:
        backbone_path = os.path.join(model_dir, "backbone.keras")
        with checkpoint.writing(backbone_path):
            checkpoint.atomic_save_keras(model.backbone, backbone_path)
    results.update({"epochs_completed": FLAGS.epochs, "steps_completed": step})
    if train_seconds is not None:
        results["train_seconds_this_run"] = train_seconds
    summary = "pretraining done"
    if bank_ds is not None:
        if monitor is not None and monitor.last is not None:
            results["knn_top1"] = monitor.last
        else:
            results["knn_top1"] = knn.evaluate_encoder(encoders.feature_model(model, FLAGS.knn_feature), bank_ds,
                                                       test_ds, info.num_classes, FLAGS.knn_k, FLAGS.knn_t)
        results.update({"knn_k": FLAGS.knn_k, "knn_t": FLAGS.knn_t, "knn_feature": FLAGS.knn_feature})
        summary = f"kNN top-1 on {FLAGS.dataset} {FLAGS.test_split}: pretrained {results['knn_top1']:.2f}%"
        if "knn_top1_random_init" in results:
            summary += f" | random init (same architecture) {results['knn_top1_random_init']:.2f}%"
            if results.get("knn_feature_random_init", "backbone") != FLAGS.knn_feature:
                summary += f" of the {results.get('knn_feature_random_init', 'backbone')} output"
        if FLAGS.knn_feature != "backbone":
            summary += f" (kNN of the {FLAGS.knn_feature} output)"
    if "probe_top1" in results and FLAGS.online_probe:
        summary += f" | online linear probe top-1 {results['probe_top1']:.2f}%"
    with checkpoint.writing(results_path):
        checkpoint.atomic_write_text(results_path, json.dumps(results, indent=2))
    print(summary, flush=True)


def _intact(model_dir):
    """What a failed write left intact in `model_dir`, in words: the newest checkpoint and the results."""
    from mixmask_tf import checkpoint

    try:
        paths = checkpoint.list_checkpoints(os.path.join(model_dir, "checkpoints"))
        if not paths:
            return "no checkpoint was written yet"
        epoch, step = checkpoint.progress_of(paths[-1])
        where = f"epoch {epoch}" + (f" + {step} steps" if step else "")
        return f"the checkpoint {paths[-1]} ({where}) and every file written before it"
    except Exception as e:  # noqa: BLE001 (the folder itself may be unreadable now)
        return f"unknown ({type(e).__name__} reading {model_dir})"


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
        try:
            run()
        except (OSError, tf.errors.ResourceExhaustedError) as e:
            if isinstance(e, checkpoint.WriteFailed):
                raise
            with checkpoint.writing("a run file"):  # a write this command does not name: the same one line
                raise
    except checkpoint.WriteFailed as e:
        logging.debug("error", exc_info=True)
        print(f"pretrain: error: {e}. Intact: {_intact(FLAGS.model_dir)}. Free space (or make the folder "
              "writable) and run the same command again to finish the run", file=sys.stderr)
        sys.exit(WRITE_FAILED_EXIT_CODE)
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
