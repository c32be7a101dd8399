"""Summary callbacks of the pretraining CLI: PlotCurves, LearningRateLogger, MixedViewSummary."""

import glob
import os

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones, branches, visualize
from mixmask_tf.models import build_trainer
from trainers import callbacks

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _trainer(branch_name="mixmask", **branch_options):
    keras.utils.set_random_seed(0)
    branch = branches.build_branch(branch_name, **branch_options)
    model = build_trainer("simsiam", backbones.small_convnet((16, 16, 3), width=2), branch=branch,
                          seed=7, embedding_dim=4)
    return model


def _two_view_batch(n=8, seed=0):
    pixels = np.random.default_rng(seed).uniform(size=(n, 2, 16, 16, 3)).astype(np.float32)
    return (pixels - np.float32(MEAN)) / np.float32(STD)


def _image_events(folder):
    """{(tag, step): [decoded images [H, W, C] float in [0, 1]]} of the event files in `folder`."""
    found = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "images"
                blobs = tf.make_ndarray(value.tensor)  # [width, height, png, png, ...]
                pngs = [tf.io.decode_png(b).numpy() / 255.0 for b in blobs[2:]]
                found[(value.tag, event.step)] = pngs
    return found


def _run_epochs(model, cbs, epochs, steps_per_epoch=2):
    """Drives callbacks as `fit` does (one CallbackList, History appended) without training.

    The optimizer's step counter advances by `steps_per_epoch` per epoch; logs carry a loss.
    """
    cb_list = keras.callbacks.CallbackList(cbs, add_history=True, model=model)
    cb_list.on_train_begin()
    for epoch in range(epochs):
        cb_list.on_epoch_begin(epoch)
        model.optimizer.iterations.assign_add(steps_per_epoch)
        cb_list.on_epoch_end(epoch, {"loss": 2.0 - epoch, "loss_clean": 1.0 - 0.5 * epoch})
    cb_list.on_train_end()
    return model.history


def test_plot_curves_after_metrics_log(tmp_path):
    model = _trainer("none")
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    plot = callbacks.PlotCurves(str(tmp_path))
    _run_epochs(model, [callbacks.MetricsLog(str(tmp_path)), plot], epochs=2)
    rows = visualize.load_metrics_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [(r["epoch"], r["loss"]) for r in rows] == [(1, 2.0), (2, 1.0)]
    with open(plot.path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(plot.path).shape[:2] == (600, 700)
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "metrics.jsonl"]  # no temporary file left
    # The picture is drawn from the file's rows (and differs from an empty plot).
    expected, empty = tmp_path / "expected" / "c.png", tmp_path / "expected" / "empty.png"
    assert visualize.save_curves_png(str(expected), rows, title="after epoch 2")["loss"] == ["loss", "loss_clean"]
    visualize.save_curves_png(str(empty), [], title="after epoch 2")
    written = matplotlib.image.imread(plot.path)
    np.testing.assert_array_equal(written, matplotlib.image.imread(str(expected)))
    assert not np.array_equal(written, matplotlib.image.imread(str(empty)))


def test_summary_callbacks_in_fit(tmp_path):
    model = _trainer("mixmask", grid_size=4)
    model.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)  # no tracing: faster here
    batch = _two_view_batch(n=4)
    data = tf.data.Dataset.from_tensor_slices(batch).batch(4)
    plot = callbacks.PlotCurves(str(tmp_path))
    summary = callbacks.MixedViewSummary(str(tmp_path / "logs"), batch, mean=MEAN, std=STD)
    model.fit(data, epochs=1, verbose=0, callbacks=[
        callbacks.LearningRateLogger(), callbacks.MetricsLog(str(tmp_path)), plot, summary])
    row, = visualize.load_metrics_jsonl(str(tmp_path / "metrics.jsonl"))
    assert row["learning_rate"] == pytest.approx(0.05) and "loss_mix" in row
    assert matplotlib.image.imread(plot.path).shape[:2] == (600, 700)
    assert sorted(_image_events(summary.folder)) == [("clean_views", 0), ("mixed_views", 0)]


def test_plot_curves_tolerates_a_missing_metrics_file(tmp_path):
    plot = callbacks.PlotCurves(str(tmp_path / "run"))
    plot.on_epoch_end(0, {})
    assert matplotlib.image.imread(plot.path).shape[:2] == (600, 700)


def test_learning_rate_logger_evaluates_the_schedule_at_the_step(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model = _trainer("none")
    model.compile(optimizer=keras.optimizers.SGD(schedule))
    history = _run_epochs(model, [callbacks.LearningRateLogger(), callbacks.MetricsLog(str(tmp_path))],
                          epochs=2, steps_per_epoch=2)
    expected = [float(schedule(2)), float(schedule(4))]  # 0.1 * 0.5**2, 0.1 * 0.5**4
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-6)
    rows = visualize.load_metrics_jsonl(str(tmp_path / "metrics.jsonl"))
    np.testing.assert_allclose([r["learning_rate"] for r in rows], expected, rtol=1e-6)

    optimizer = keras.optimizers.SGD(schedule)
    optimizer.iterations.assign(7)
    assert callbacks.LearningRateLogger.current(optimizer) == pytest.approx(0.1 * 0.5 ** 7)
    assert callbacks.LearningRateLogger.current(keras.optimizers.SGD(0.25)) == pytest.approx(0.25)


def test_mixed_view_summary_writes_what_the_trainer_feeds_the_query_encoder(tmp_path):
    model = _trainer("mixmask", grid_size=4)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    batch = _two_view_batch()
    summary = callbacks.MixedViewSummary(str(tmp_path), batch, every=2, max_outputs=3, mean=MEAN, std=STD)
    _run_epochs(model, [summary], epochs=3, steps_per_epoch=2)
    events = _image_events(summary.folder)
    assert sorted(events) == [("clean_views", 1), ("mixed_views", 1)]  # every=2: end of epoch 2 only

    # Written after epoch 2 (4 steps): the branch with replica 0's seed at step 4.
    model.optimizer.iterations.assign(4)
    x1 = tf.constant(batch[:, 0])
    expected_mixed = model.branch(x1, model.step_seed(0)).batches[0].images.numpy()
    clean = visualize.to_display(batch[:3, 0], MEAN, STD)
    mixed = visualize.to_display(expected_mixed[:3], MEAN, STD)
    assert len(events[("mixed_views", 1)]) == 3
    np.testing.assert_allclose(np.stack(events[("clean_views", 1)]), clean, atol=1.5 / 255)
    np.testing.assert_allclose(np.stack(events[("mixed_views", 1)]), mixed, atol=1.5 / 255)
    assert np.abs(mixed - clean).max() > 0.1  # the mixtures differ from the clean views


def test_mixed_view_summary_names_every_batch_and_none_branch_writes_clean_only(tmp_path):
    batch = _two_view_batch()
    model = _trainer("mixmask_unmix", grid_size=4)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    summary = callbacks.MixedViewSummary(str(tmp_path / "a"), batch, seed=(1, 2))
    summary.set_model(model)
    summary.on_epoch_end(0)
    summary.on_train_end()
    assert sorted(_image_events(summary.folder)) == [
        ("clean_views", 0), ("mixed_views", 0), ("mixed_views_unmix", 0)]

    model = _trainer("none")
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    summary = callbacks.MixedViewSummary(str(tmp_path / "b"), batch, max_outputs=2)
    summary.set_model(model)
    summary.on_epoch_end(4)
    summary.on_train_end()
    events = _image_events(summary.folder)
    assert sorted(events) == [("clean_views", 4)] and len(events[("clean_views", 4)]) == 2
    with pytest.raises(ValueError, match="pretraining batch"):
        callbacks.MixedViewSummary(str(tmp_path), batch[:, 0])


def test_mixed_view_summary_shows_every_mscn_view_as_the_network_is_given_it(tmp_path):
    model = _trainer("mscn", grid_size=4, ratio=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    pixels = np.random.default_rng(1).uniform(size=(8, 4, 16, 16, 3)).astype(np.float32)
    batch = (pixels - np.float32(MEAN)) / np.float32(STD)
    summary = callbacks.MixedViewSummary(str(tmp_path), batch, seed=(3, 4), mean=MEAN, std=STD)
    summary.set_model(model)
    summary.on_epoch_end(0)
    summary.on_train_end()
    events = _image_events(summary.folder)
    assert sorted(events) == [("clean_views", 0)] + [(f"network_view{v}", 0) for v in (1, 2, 3, 4)]
    # What the train step computes: high-pass filter, then the branch's masks with that seed.
    filtered = tuple(model.input_filter(tf.constant(batch[:, v])) for v in range(4))
    expected = model.branch.mask_views(filtered, tf.constant((3, 4), tf.int32)).views
    for v in range(4):
        shown = visualize.network_display(expected[v].numpy()[:4], MEAN, STD, filtered=True)
        np.testing.assert_allclose(np.stack(events[(f"network_view{v + 1}", 0)]), shown, atol=1.5 / 255)


def test_mixed_view_summary_shows_the_saliency_map_masked_query_and_hard_negative(tmp_path):
    model = build_trainer("mocov2", backbones.small_convnet((16, 16, 3), width=2), seed=7, embedding_dim=4,
                          queue_size=16, branch=branches.build_branch("saliency", fill="mean"))
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    batch = _two_view_batch()
    summary = callbacks.MixedViewSummary(str(tmp_path), batch, seed=(5, 6), mean=MEAN, std=STD)
    summary.set_model(model)
    summary.on_epoch_end(0)
    summary.on_train_end()
    events = _image_events(summary.folder)
    assert sorted(events) == [("clean_views", 0), ("hard_negative1", 0), ("network_view1", 0), ("network_view2", 0),
                              ("saliency_foreground_view1", 0), ("saliency_foreground_view2", 0)]
    out = model.branch.prepare_views((tf.constant(batch[:, 0]), tf.constant(batch[:, 1])), tf.constant((5, 6)))
    shown = visualize.to_display(out.negatives[0].images.numpy()[:4], MEAN, STD)
    np.testing.assert_allclose(np.stack(events[("hard_negative1", 0)]), shown, atol=1.5 / 255)
    foreground = model.branch.display_maps((tf.constant(batch[:, 0]), tf.constant(batch[:, 1])))
    np.testing.assert_allclose(np.stack(events[("saliency_foreground_view1", 0)])[..., :1],
                               foreground["foreground (view 1)"].numpy()[:4], atol=1.5 / 255)
