"""Workarounds for Keras 3.15 on TensorFlow 2.21; each says what it works around and why."""

import tensorflow as tf


def for_keras_reduction(logs):
    """Logs as Keras can reduce them across workers.

    Under MultiWorkerMirroredStrategy Keras reduces each logged value with
    ``strategy.reduce("MEAN", value, axis=0)``, which needs rank >= 1: scalars become [1]
    (reduced back to scalars); elsewhere the logs are returned unchanged.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def unrolled_train_function(model):
    """A train function for ``steps_per_execution`` > 1: a plain unrolled loop.

    Keras 3.15 runs several steps per call in a `tf.while_loop` over optionals, which fails
    under MirroredStrategy on TensorFlow 2.21 ("You must feed a value for placeholder
    tensor ... while/cond/Placeholder"), even for a one-layer model. This function runs
    ``steps_per_execution`` steps one after the other in one `tf.function` (each step
    XLA-compiled when ``jit_compile``), returning the last step's logs as Keras does. It
    expects every execution to have its full number of batches: the pretraining CLI
    keeps the steps per epoch a multiple of it and feeds an endless dataset.
    """
    from keras.src.backend.tensorflow.trainer import reduce_per_replica

    strategy = model.distribute_strategy
    steps = int(model.steps_per_execution)

    def one_step(data):
        return reduce_per_replica(strategy.run(model.train_step, args=(data,)), strategy, reduction="auto")

    if not model.run_eagerly:
        one_step = tf.function(one_step, reduce_retracing=True, jit_compile=bool(model.jit_compile))

    def multi_step(iterator):
        outputs = one_step(next(iterator))
        for _ in range(steps - 1):
            outputs = one_step(next(iterator))
        return outputs

    if not model.run_eagerly:
        multi_step = tf.function(multi_step, reduce_retracing=True)
    return multi_step
