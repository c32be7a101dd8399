"""Stateless seed derivation: the one place where seeds are split, canonicalised and drawn from.

Every random op of the library takes an explicit seed, an int32/int64 tensor of shape [2], and
draws only with TensorFlow's stateless ops, so a result is a function of (inputs, seed). A train
step's seed is a function of (seed, step, replica) (``SiameseTrainer.step_seed``); an input batch's
is a function of (seed, epoch, batch) (``data.make_pretrain_dataset``). This module imports nothing
of the project.

Two families, kept apart because they give different numbers and both are relied on:

* the augmentation family -- :func:`split` and :func:`uniform` -- TensorFlow's stateless kernels
  used as they are (float draws), for ``tf.data`` augmentation, which never runs under XLA;
* the XLA-portable family -- :func:`canonical`, :func:`split_canonical`, :func:`split_pair`,
  :func:`portable_uniform`, :func:`stream_base`, :func:`stream_seed` -- for masks, mixtures and
  anything else drawn inside the compiled train step. On CPU, TF's stateless kernels and their
  XLA lowerings give the same bits only for *integer* draws and only for seed components in
  [0, 2**31), so seeds are first mapped into that range (:func:`canonical`) and uniform floats are
  built from 24 random integer bits (:func:`portable_uniform`).
"""

import numbers

import tensorflow as tf

__all__ = ["as_seed", "split", "uniform", "canonical", "split_canonical", "split_pair",
           "portable_uniform", "stream_base", "stream_seed", "UNIFORM_BITS"]

# Random bits of a portable_uniform draw: values are k * 2**-24, k uniform in [0, 2**24).
UNIFORM_BITS = 24


def as_seed(seed) -> tf.Tensor:
    """A seed [2] from a Python int (-> int64 ``[0, seed]``) or an integer pair / tensor [2].

    Raises:
      ValueError: anything that is neither a Python int nor an integer pair of shape [2].
    """
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return tf.constant([0, int(seed)], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape != (2,):
        raise ValueError(f"seed must be a Python int or an integer pair [2], got {seed!r}.")
    return seed


# ----------------------------------------------------------------------------- augmentation family


def split(seed, num: int) -> tf.Tensor:
    """Splits a stateless seed into ``num`` independent seeds (``stateless_split``).

    Args:
      seed: int32/int64 tensor of shape [2] (other dtypes are cast to int64).
      num: number of sub-seeds.

    Returns:
      Tensor [num, 2] of the same integer dtype as ``seed``.
    """
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    return tf.random.experimental.stateless_split(seed, num=num)


def uniform(seed, shape=(), minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """float32 U(minval, maxval) of ``shape`` from a stateless seed [2] (TF's float kernel)."""
    return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval, dtype=tf.float32)


# ----------------------------------------------------------------------------- XLA-portable family


def canonical(seed) -> tf.Tensor:
    """Maps any int32/int64 seed [2] to an int32 seed [2] with components in [0, 2**31).

    TF's stateless kernels and their XLA lowerings agree bit for bit on CPU only for seed
    components in [0, 2**31) (negative or wider values are extended differently), so every seed
    of the train step passes through this map before a stateless op consumes it. int64 seeds have
    their high bits xor-folded in first.

    Args:
      seed: int32/int64 tensor (or Python/NumPy pair) of shape [2].

    Returns:
      int32 tensor [2], components in [0, 2**31).

    Raises:
      ValueError: a non-integer seed.
    """
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"seed must be an int32/int64 tensor of shape [2], got {seed.dtype}.")
    # Scalar ops, then stack: on XLA CPU a seed produced by a *vector* bitwise op
    # makes the random kernels that consume it about 10x slower (fusion artefact).
    parts = [seed[0], seed[1]]
    if seed.dtype != tf.int32:
        parts = [tf.cast(p, tf.int64) for p in parts]
        parts = [tf.bitwise.bitwise_xor(p, tf.bitwise.bitwise_xor(
            tf.bitwise.right_shift(p, 31), tf.bitwise.right_shift(p, 62))) for p in parts]
        parts = [tf.cast(tf.bitwise.bitwise_and(p, 0x7FFFFFFF), tf.int32) for p in parts]
    return tf.stack([tf.bitwise.bitwise_and(p, 0x7FFFFFFF) for p in parts])


def split_canonical(seed, num: int) -> tf.Tensor:
    """``num`` independent sub-seeds of the canonical seed: int32 [num, 2]."""
    return tf.random.experimental.stateless_split(canonical(seed), num=num)


def split_pair(seed):
    """Two independent sub-seeds ([2] int32 each) of ``seed``: :func:`split_canonical` with 2."""
    seeds = split_canonical(seed, 2)
    return seeds[0], seeds[1]


def portable_uniform(seed, shape, dtype=tf.float32) -> tf.Tensor:
    """Stateless U[0, 1) of ``shape``, identical with and without XLA.

    Args:
      seed: int32/int64 tensor of shape [2].
      shape: list/tuple of ints or scalar int tensors.
      dtype: float dtype of the result.

    Returns:
      Tensor of ``shape`` and ``dtype`` with values ``k * 2**-24``, ``k`` uniform in
      ``[0, 2**24)``.
    """
    bits = tf.random.stateless_uniform(shape, seed=canonical(seed), minval=0, maxval=2 ** UNIFORM_BITS,
                                       dtype=tf.int32)
    return tf.cast(bits, dtype) * (2.0 ** -UNIFORM_BITS)


def stream_base(seed) -> tf.Tensor:
    """Hashes ``seed`` once into the base [2] int32 seed of a per-iteration stream."""
    return canonical(split_canonical(seed, 1)[0])


def stream_seed(base, step) -> tf.Tensor:
    """Seed of iteration ``step`` of a stream: ``[base[0], base[1] xor step]``.

    Cheaper inside a ``tf.while_loop`` than ``stateless_fold_in`` (no extra Philox evaluation per
    iteration, which also shortens XLA compilation); distinct steps give distinct seeds, and the
    stateless ops hash the seed into the Philox key, so the streams are independent. ``base``
    comes from :func:`stream_base`, so nearby user seeds do not share streams.
    """
    return tf.stack([base[0], tf.bitwise.bitwise_xor(base[1], tf.cast(step, tf.int32))])
