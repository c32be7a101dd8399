"""Training checkpoints: exact round trip, mismatch errors, keep-N, gs://-style paths (ram://),
non-chief temporary folders, legacy .npz runs, atomic run files."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import write_legacy_npz
from mixmask_tf import backbones, branches, checkpoint
from mixmask_tf.models import MoCo

SHAPE = (16, 16, 3)


def _moco(seed=0, embedding_dim=8):
    keras.utils.set_random_seed(seed)
    model = MoCo(backbones.small_convnet(SHAPE, width=4), branch=branches.build_branch("mixmask", grid_size=4),
                 embedding_dim=embedding_dim, queue_size=32, seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    return model


def _train(model, steps=2):
    data = np.random.default_rng(0).normal(size=(8 * steps, 2) + SHAPE).astype("float32")
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), verbose=0)


def _state(model):
    variables, _ = checkpoint.state_variables(model)
    return [v.numpy().copy() for v in variables]


@pytest.mark.parametrize("root", ["local", "ram"])
def test_round_trip_is_exact_and_mismatch_is_an_error(tmp_path, root):
    folder = str(tmp_path / "ckpt") if root == "local" else f"ram://ckpt-test-{os.getpid()}/checkpoints"
    model = _moco()
    _train(model)
    saver = checkpoint.TrainingCheckpoint(model, folder)
    path = saver.save(3, 1)
    assert path.endswith("ckpt-2") and tf.io.gfile.exists(path + ".index")
    saved = _state(model)
    other = _moco(seed=5)
    assert not np.array_equal(saved[0], _state(other)[0])
    other_saver = checkpoint.TrainingCheckpoint(other, folder)
    assert other_saver.latest() == path
    assert other_saver.restore(path) == (3, 1)
    for a, b in zip(saved, _state(other)):  # weights, EMA copy, queue + pointer, BN, optimizer slots, step
        np.testing.assert_array_equal(a, b)
    names, arrays, epoch, step = checkpoint.read_checkpoint(path)
    assert (epoch, step) == (3, 1) and "queue" in names and "queue_ptr" in names and "iteration" in names
    with pytest.raises(checkpoint.CheckpointMismatchError, match="has shape"):
        checkpoint.TrainingCheckpoint(_moco(embedding_dim=16), folder).restore(path)
    plain = MoCo(backbones.small_convnet(SHAPE, width=4), embedding_dim=8, queue_size=32, version="v1")
    plain.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    with pytest.raises(checkpoint.CheckpointMismatchError, match="different model"):
        checkpoint.TrainingCheckpoint(plain, folder).restore(path)


def test_keeps_newest_and_leaves_no_temporary_files(tmp_path):
    model = _moco()
    saver = checkpoint.TrainingCheckpoint(model, str(tmp_path), keep=2)
    for epoch in range(1, 6):
        model.optimizer.iterations.assign(epoch * 10)
        saver.save(epoch)
    assert [os.path.basename(p) for p in saver.checkpoints()] == ["ckpt-40", "ckpt-50"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-40.data-00000-of-00001", "ckpt-40.index",
                                            "ckpt-50.data-00000-of-00001", "ckpt-50.index"]


def test_non_chief_saves_into_a_temporary_folder_it_removes(tmp_path):
    model = _moco()
    worker = checkpoint.TrainingCheckpoint(model, str(tmp_path), is_chief=False, worker_id=1)
    assert worker.save(1) is None
    assert os.listdir(tmp_path) == []  # nothing in the chief's folder, the temporary folder is gone


def test_legacy_npz_runs_resume(tmp_path):
    model = _moco()
    _train(model)
    legacy = write_legacy_npz(model, str(tmp_path), epoch=2)
    saved = _state(model)
    other = _moco(seed=3)
    saver = checkpoint.TrainingCheckpoint(other, str(tmp_path))
    assert saver.latest() == legacy and checkpoint.is_legacy(legacy)
    assert saver.restore(legacy) == (2, 0)
    for a, b in zip(saved, _state(other)):
        np.testing.assert_array_equal(a, b)
    new = saver.save(2)  # the next save is a TensorFlow checkpoint, and it is the one resumed
    assert saver.latest() == new and not checkpoint.is_legacy(new)


def test_non_finite_state_is_never_saved(tmp_path):
    model = _moco()
    saver = checkpoint.TrainingCheckpoint(model, str(tmp_path))
    model.queue.assign(tf.fill(model.queue.shape, float("nan")))
    with pytest.raises(checkpoint.NonFiniteStateError, match="queue"):
        saver.save(1)
    assert saver.latest() is None


def test_atomic_text_files_through_gfile(tmp_path):
    for folder in (str(tmp_path), f"ram://text-{os.getpid()}"):
        path = os.path.join(folder, "sub", "results.json")
        checkpoint.atomic_write_text(path, "{}")
        checkpoint.atomic_write_text(path, '{"a": 1}')
        assert checkpoint.read_text(path) == '{"a": 1}'
        assert tf.io.gfile.listdir(os.path.dirname(path)) == ["results.json"]
        assert checkpoint.read_text(os.path.join(folder, "missing"), "default") == "default"
