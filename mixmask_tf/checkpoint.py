"""Atomic, resumable training checkpoints of a trainer and its optimizer.

A checkpoint is one `.npz` file holding every model weight (encoders, momentum copies,
queue and pointer, BatchNorm statistics), every optimizer variable (iterations, momenta) and
the epoch count; with an online linear probe, also the probe's weights and its optimizer's
variables. It is written to a temporary file in the same folder and renamed into
place, so a crash or a kill leaves either the previous checkpoint or the new one, never a
half-written file.
"""

import glob
import json
import os
import re
import tempfile

import numpy as np

CHECKPOINT_PATTERN = "ckpt-{epoch:05d}.npz"
_CHECKPOINT_RE = re.compile(r"ckpt-(\d{5})\.npz$")


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by a model with different weights."""


def _atomic_write(path, write_fn, suffix):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """Writes a text file atomically (temporary file + rename)."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(path, write, ".txt")


def atomic_save_keras(model, path):
    """Saves a Keras model to a `.keras` file atomically."""
    _atomic_write(path, model.save, ".keras")


def normalized_name(path):
    """A variable's path without what depends on the process rather than the architecture.

    Drops the owner's auto-numbered name ("mo_co_3/", "sgd_2/") and numeric suffixes that
    depend on how many objects a process created before.
    """
    parts = path.split("/")[1:] or path.split("/")
    return "/".join(re.sub(r"_\d+$", "", part) for part in parts)


def state_variables(model):
    """(variables, normalised names) a checkpoint holds, in a fixed order.

    Every model weight and the optimizer's variables; with an online probe (a model with a
    `probe_optimizer`), the probe's weights are moved after those (named "probe/...") and
    followed by its optimizer's variables ("probe_optimizer/..."), so the list of a model
    without a probe is the same as before probes existed.
    """
    probe_optimizer = getattr(model, "probe_optimizer", None)
    probe_weights = list(model.probe.weights) if probe_optimizer is not None else []
    probe_ids = {id(v) for v in probe_weights}
    variables = [v for v in model.weights if id(v) not in probe_ids] + list(model.optimizer.variables)
    names = [normalized_name(v.path) for v in variables]
    if probe_optimizer is not None:
        variables += probe_weights + list(probe_optimizer.variables)
        names += [f"probe/{normalized_name(v.path)}" for v in probe_weights]
        names += [f"probe_optimizer/{normalized_name(v.path)}" for v in probe_optimizer.variables]
    return variables, names


def save(model, folder, epoch, keep=3):
    """Writes `folder/ckpt-<epoch>.npz` atomically and keeps the newest `keep` checkpoints.

    Args:
      model: a compiled trainer (its optimizer built).
      folder: checkpoint folder.
      epoch: number of completed epochs.
      keep: how many checkpoints to keep.

    Returns:
      the checkpoint path.
    """
    variables, names = state_variables(model)
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    arrays["__names__"] = np.array(json.dumps(names))
    arrays["__epoch__"] = np.array(int(epoch))
    path = os.path.join(folder, CHECKPOINT_PATTERN.format(epoch=epoch))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write, ".npz")
    for old in list_checkpoints(folder)[:-keep]:
        os.remove(old)
    return path


def list_checkpoints(folder):
    """Checkpoint paths in `folder`, oldest first."""
    paths = [p for p in glob.glob(os.path.join(folder, "ckpt-*.npz")) if _CHECKPOINT_RE.search(p)]
    return sorted(paths, key=lambda p: int(_CHECKPOINT_RE.search(p).group(1)))


def latest(folder):
    """The newest checkpoint path in `folder`, or None."""
    paths = list_checkpoints(folder)
    return paths[-1] if paths else None


def restore(model, path):
    """Restores a checkpoint into a compiled trainer; returns the epoch count it holds.

    Raises:
      CheckpointMismatchError: the model's weights differ in names or shapes.
    """
    variables, names = state_variables(model)
    with np.load(path) as data:
        saved_names = json.loads(str(data["__names__"]))
        if saved_names != names:
            missing = sorted(set(saved_names) ^ set(names))[:5]
            raise CheckpointMismatchError(
                f"{path} was written by a different model/optimizer configuration "
                f"(first differing weights: {missing}); use a new model_dir or the original flags")
        values = [data[f"v{i:05d}"] for i in range(len(variables))]
        epoch = int(data["__epoch__"])
    for v, value in zip(variables, values):
        if tuple(v.shape) != value.shape:
            raise CheckpointMismatchError(f"{path}: weight {v.path} has shape {value.shape}, model has {tuple(v.shape)}")
    for v, value in zip(variables, values):
        v.assign(value)
    return epoch
