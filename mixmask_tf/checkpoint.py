"""Training checkpoints that follow TensorFlow's multi-worker rules, and atomic run files.

A checkpoint is a `tf.train.Checkpoint` of every model weight (encoders, momentum copies,
queue and pointer, BatchNorm statistics), every optimizer variable (iterations, momenta), with
an online linear probe its weights and its optimizer's, and the progress (epoch, step within
the epoch): the whole state, restored exactly. :class:`TrainingCheckpoint` writes them with a
`tf.train.CheckpointManager`, which writes the shards under a temporary name, merges them and
only then updates its `checkpoint` index file atomically, so a crash or a kill leaves the
previous checkpoint or the new one, never a half-written one, and keeps the newest N. Every
path goes through `tf.io.gfile`, so the run folder may be `gs://...` (tests use `ram://`).

Under MultiWorkerMirroredStrategy every worker saves at the same time (saving may run
collectives): the chief into the run folder, the others into a temporary folder of their own
that they delete right after. This is TensorFlow's rule: saving runs collectives, so every worker
must take part in every save, but only the chief's files may be kept.

Runs written before this format (`checkpoints/ckpt-<epoch>.npz`) still resume: their newest
`.npz` is restored when the folder holds no TensorFlow checkpoint, and the next save is in the
new format.
"""

import contextlib
import errno
import io
import json
import os
import re
import tempfile
import uuid

import numpy as np

CHECKPOINT_PREFIX = "ckpt"
LEGACY_PATTERN = "ckpt-{epoch:05d}.npz"
_LEGACY_RE = re.compile(r"ckpt-(\d{5})\.npz$")


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by a model with different weights."""


class NonFiniteStateError(ValueError):
    """A weight or optimizer variable holds NaN or Inf: such a state is never saved."""


class WriteFailed(OSError):
    """A run file could not be written (a full disk, a quota, a read-only or vanished folder).

    `what` names the file or files; the message adds the reason. What was written before is intact:
    every run file is replaced atomically, so a failed write leaves the previous version.
    """

    def __init__(self, what, reason):
        super().__init__(f"could not write {what}: {reason}")
        self.what = what
        self.reason = reason


_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_SPACE_WORDS = ("no space left", "disk quota", "read-only file system", "permission denied")


def _short_reason(message, limit=300):
    """A TensorFlow or OS error message in one short line: TensorFlow's ``{{function_node ...}}``
    prefix dropped, the first line, and its end (where the cause, e.g. "No space left on device",
    stands) when it is too long."""
    line = re.sub(r"\{\{[^}]*\}\}\s*", "", message).strip().splitlines()[0]
    return line if len(line) <= limit else "..." + line[-limit:]


@contextlib.contextmanager
def writing(what):
    """Turns a failed write inside the block into one `WriteFailed` naming `what`.

    Catches what a full disk, a quota or a read-only folder raises: an `OSError` with one of those
    errnos, and TensorFlow's file errors (`ResourceExhaustedError`, `PermissionDeniedError`, or any
    `OpError` whose message says so). Other errors (a lost worker's collective, a bug) pass through.
    """
    import tensorflow as tf

    try:
        yield
    except WriteFailed:
        raise
    except (OSError, tf.errors.OpError) as e:
        message = str(getattr(e, "message", None) or e).strip()
        space = (isinstance(e, OSError) and e.errno in _SPACE_ERRNOS) or isinstance(
            e, (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError)) or any(
            w in message.lower() for w in _SPACE_WORDS)
        if not space:
            raise
        reason = _short_reason(message) if message else type(e).__name__
        raise WriteFailed(what, reason) from e


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def atomic_write_bytes(path, data):
    """Writes a file atomically through `tf.io.gfile` (a temporary name in the folder, then a rename)."""
    gfile = _gfile()
    folder = os.path.dirname(path)
    if folder:
        gfile.makedirs(folder)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        with gfile.GFile(tmp, "wb") as f:
            f.write(data)
        gfile.rename(tmp, path, overwrite=True)
    finally:
        if gfile.exists(tmp):
            gfile.remove(tmp)


def atomic_write_text(path, text):
    """Writes a text file atomically (temporary file + rename), local or through `tf.io.gfile`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path, default=None):
    """A text file's content through `tf.io.gfile`, or `default` when it does not exist."""
    gfile = _gfile()
    if not gfile.exists(path):
        return default
    with gfile.GFile(path, "rb") as f:
        return f.read().decode("utf-8")


def atomic_save_file(path, write_fn, suffix):
    """Writes `path` with `write_fn(local_path)` (a library that writes only local files, e.g.
    Keras or matplotlib) into a local temporary file, then copies it into place atomically."""
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            atomic_write_bytes(path, f.read())
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save_keras(model, path):
    """Saves a Keras model to a `.keras` file atomically (any `tf.io.gfile` path)."""
    atomic_save_file(path, model.save, ".keras")


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


def _key(i, name):
    return f"{i:05d}:{name}"


def _unescape(key):
    """A checkpoint key's object name as it was given (TensorFlow escapes "/" as ".S", "." as "..")."""
    out, i = [], 0
    while i < len(key):
        if key[i] == "." and i + 1 < len(key):
            out.append("/" if key[i + 1] == "S" else key[i + 1])
            i += 2
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def progress_of(path):
    """(completed epochs, steps into the next epoch) of a checkpoint, read without a model.

    Reads only the `progress` entry (a legacy `.npz`: its epoch, step 0).
    """
    if is_legacy(path):
        return int(_LEGACY_RE.search(path).group(1)), 0
    from tensorflow.python.training import py_checkpoint_reader

    reader = py_checkpoint_reader.NewCheckpointReader(path)
    epoch, step = (int(v) for v in reader.get_tensor("progress/.ATTRIBUTES/VARIABLE_VALUE"))
    return epoch, step


def is_legacy(path):
    """Whether `path` is a checkpoint of the old `.npz` format."""
    return bool(_LEGACY_RE.search(path))


def read_checkpoint(path):
    """The state a checkpoint holds, without a model.

    Args:
      path: a checkpoint prefix (".../ckpt-<step>") or a legacy ".npz" file.

    Returns:
      (names: list of the normalised variable names in `state_variables` order, arrays: list of
      numpy arrays in that order, epoch: completed epochs, step: steps done in the next epoch).
    """
    if is_legacy(path):
        with _gfile().GFile(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
            names = json.loads(str(data["__names__"]))
            return names, [data[f"v{i:05d}"] for i in range(len(names))], int(data["__epoch__"]), 0
    from tensorflow.python.training import py_checkpoint_reader

    reader = py_checkpoint_reader.NewCheckpointReader(path)
    entries = {}
    for full in reader.get_variable_to_shape_map():
        if full.startswith("state/") and full.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            key = _unescape(full[len("state/"):-len("/.ATTRIBUTES/VARIABLE_VALUE")])
            index, _, name = key.partition(":")
            entries[int(index)] = (name, full)
    order = sorted(entries)
    epoch, step = (int(v) for v in reader.get_tensor("progress/.ATTRIBUTES/VARIABLE_VALUE"))
    return ([entries[i][0] for i in order], [reader.get_tensor(entries[i][1]) for i in order], epoch, step)


def _check_match(path, saved_names, saved_shapes, variables, names):
    if saved_names != names:
        differing = sorted(set(saved_names) ^ set(names))[:5]
        raise CheckpointMismatchError(
            f"{path} was written by a different model/optimizer configuration "
            f"(first differing weights: {differing or 'the same names in another order'}); "
            "use a new model_dir or the original flags")
    for v, shape in zip(variables, saved_shapes):
        if tuple(v.shape) != tuple(shape):
            raise CheckpointMismatchError(f"{path}: weight {v.path} has shape {tuple(shape)}, model has {tuple(v.shape)}")


def non_finite_variables(variables, names):
    """Names of the variables holding NaN or Inf (floating variables only)."""
    bad = []
    for v, name in zip(variables, names):
        value = np.asarray(v.numpy())
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad.append(name)
    return bad


class TrainingCheckpoint:
    """Saves and restores a trainer's whole state in `directory`, keeping the newest `keep`.

    Args:
      model: a compiled trainer (its optimizer built).
      directory: the checkpoint folder (any `tf.io.gfile` path: local, gs://, ram://).
      keep: how many checkpoints to keep.
      is_chief: whether this worker writes into `directory` (a single process always does).
      worker_id: this worker's task index (names a non-chief worker's temporary folder).

    A checkpoint is named `ckpt-<global step>`; its `progress` is (completed epochs, steps done
    in the epoch after them): an end-of-epoch checkpoint has step 0, a preemption checkpoint
    the step at which it stopped.
    """

    def __init__(self, model, directory, keep=3, is_chief=True, worker_id=0):
        import tensorflow as tf

        self.model = model
        self.directory = directory
        self.keep = int(keep)
        self.is_chief = bool(is_chief)
        self.variables, self.names = state_variables(model)
        with tf.init_scope():
            self.progress = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="progress")
        self._checkpoint = tf.train.Checkpoint(
            state={_key(i, n): v for i, (n, v) in enumerate(zip(self.names, self.variables))},
            progress=self.progress)
        self._write_dir = directory if self.is_chief else os.path.join(directory, f".tmp-worker-{int(worker_id)}")
        self._manager = tf.train.CheckpointManager(self._checkpoint, self._write_dir, max_to_keep=self.keep,
                                                   checkpoint_name=CHECKPOINT_PREFIX)

    def checkpoints(self):
        """Paths of the checkpoints in `directory` (the chief's), oldest first (`list_checkpoints`)."""
        return list_checkpoints(self.directory)

    def latest(self):
        """The newest checkpoint path, or None."""
        paths = self.checkpoints()
        return paths[-1] if paths else None

    def save(self, epoch, step=0):
        """Saves the state after `epoch` completed epochs and `step` steps of the next one.

        Every worker must call it at the same step. Returns the chief's checkpoint path (None
        on other workers).

        Raises:
          NonFiniteStateError: a variable holds NaN or Inf (nothing is written).
        """
        bad = non_finite_variables(self.variables, self.names)
        if bad:
            raise NonFiniteStateError(f"not saving a non-finite state (NaN/Inf in {bad[:3]})")
        self.progress.assign([int(epoch), int(step)])
        number = int(self.model.optimizer.iterations.numpy())
        path = self._manager.save(checkpoint_number=number)
        if not self.is_chief:
            _gfile().rmtree(self._write_dir)
            return None
        return path

    def restore(self, path):
        """Restores a checkpoint (or a legacy `.npz`) into the model; returns (epoch, step).

        Raises:
          CheckpointMismatchError: the model's weights differ in names or shapes.
        """
        names, arrays, epoch, step = read_checkpoint(path)
        _check_match(path, names, [a.shape for a in arrays], self.variables, self.names)
        if is_legacy(path):
            for v, value in zip(self.variables, arrays):
                v.assign(value)
        else:
            self._checkpoint.restore(path).assert_consumed()
        self.progress.assign([epoch, step])
        return epoch, step


def list_checkpoints(folder):
    """Paths of the training checkpoints in `folder`, oldest first; legacy `.npz` files (only when
    there is no checkpoint of the current format); [] for a missing folder."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(folder) if _gfile().isdir(folder) else None
    if state is not None and state.all_model_checkpoint_paths:
        return [p if _gfile().exists(p + ".index") else os.path.join(folder, os.path.basename(p))
                for p in state.all_model_checkpoint_paths]
    return list_legacy(folder)


def list_legacy(folder):
    """Legacy checkpoint paths (`ckpt-<epoch>.npz`) in `folder`, oldest first."""
    gfile = _gfile()
    if not gfile.isdir(folder):
        return []
    paths = [os.path.join(folder, p) for p in gfile.listdir(folder) if _LEGACY_RE.search(p)]
    return sorted(paths, key=lambda p: int(_LEGACY_RE.search(p).group(1)))
