"""BatchNormalization that trains with TensorFlow's fused kernel.

Keras 3's `BatchNormalization` computes training-mode statistics with separate ops (cast,
`moments`, `batch_normalization`) and their separate gradients: about ten passes over every
activation, forward and backward, where TensorFlow's `FusedBatchNormV3` (one kernel forward, one
backward, oneDNN on CPU and cuDNN on GPU) needs two. `BatchNorm` is the Keras layer with the same
weights, config and semantics that uses the fused kernel in training mode whenever it can: on one
replica (or an unsynchronized layer), for [N, C] and [N, H, W, C] inputs, channels last, without
mask or renorm. Elsewhere (synchronized statistics over several replicas, inference, masks) it
is Keras' own `call`, unchanged.

Semantics kept exactly (tested against Keras' layer in tests/mixmask_tf/test_batchnorm.py): normalisation
by the biased batch variance with the layer's epsilon; moving statistics updated with the biased
variance (Keras 3's rule: the fused kernel's Bessel-corrected variance is scaled back by
(n − 1) / n); computation in float32 under mixed precision, output in the compute dtype.
"""

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="mixmask_tf", name="BatchNorm")
class BatchNorm(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fused training kernel (see the module docstring).

    Inputs [N, C] or [N, H, W, C] -> same shape; arguments as `keras.layers.BatchNormalization`.
    Setting the class attribute `fused_kernel = False` (before tracing) trains every instance with
    Keras' own ops instead (the A/B of `benchmarks.step_throughput --keras_batchnorm`).
    """

    fused_kernel = True

    def _fused(self, inputs, training, mask):
        rank = len(inputs.shape)
        if not (self.fused_kernel and training and self.trainable) or mask is not None or self.renorm:
            return False
        if rank not in (2, 4) or self.axis not in (-1, rank - 1) or inputs.shape[-1] is None:
            return False
        if self.synchronized and tf.distribute.has_strategy():
            # Statistics over several replicas need the all-reduced moments of Keras' path.
            return tf.distribute.get_strategy().num_replicas_in_sync == 1
        return True

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        rank = len(inputs.shape)
        shape = tf.shape(x)
        channels = int(inputs.shape[-1])
        if rank == 2:
            x = tf.reshape(x, [-1, 1, 1, channels])
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        empty = tf.zeros([0], tf.float32)
        y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        n = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
        variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))  # the kernel returns the unbiased variance
        # Keras' update rule, operation for operation.
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        self.moving_mean.assign(moving_mean * self.momentum + tf.stop_gradient(mean) * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + tf.stop_gradient(variance) * (1.0 - self.momentum))
        if rank == 2:
            y = tf.reshape(y, shape)
        return tf.cast(y, self.compute_dtype)


def batch_norm(name, **kwargs):
    """The project's BatchNorm: synchronized across replicas, momentum 0.9, epsilon 1e-5."""
    return BatchNorm(**{"synchronized": True, "momentum": 0.9, "epsilon": 1e-5, "name": name, **kwargs})
