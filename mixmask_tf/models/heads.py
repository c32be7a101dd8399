"""Projection and prediction heads (functional Keras models on feature vectors)."""

import keras
from keras import layers

from mixmask_tf import batchnorm


def mlp_head(input_dim, hidden_dim, output_dim, num_layers=2, batch_norm=True, last_batch_norm=False,
             name="head"):
    """An MLP head: (Dense → [BN] → ReLU) × (num_layers − 1) → Dense → [BN].

    num_layers = 1 is a linear head (MoCo v1). BatchNorm layers are synchronized across
    replicas, like the backbones'.

    Args:
      input_dim: F of the input features [N, F].
      hidden_dim: width of the hidden layers.
      output_dim: D of the output [N, D].
      num_layers: number of Dense layers (>= 1).
      batch_norm: BN after each hidden Dense (SimCLR, BYOL, SimSiam) or not (MoCo v2).
      last_batch_norm: BN (without affine parameters) after the last Dense (SimSiam's projector).

    Returns:
      keras.Model [N, input_dim] -> [N, output_dim].
    """
    if num_layers < 1:
        raise ValueError(f"a head needs at least one layer, got {num_layers}")
    inputs = keras.Input(shape=(int(input_dim),), name="features")
    x = inputs
    for i in range(num_layers - 1):
        x = layers.Dense(hidden_dim, use_bias=not batch_norm, name=f"hidden{i}")(x)
        if batch_norm:
            x = batchnorm.batch_norm(f"hidden{i}_bn")(x)
        x = layers.ReLU(name=f"hidden{i}_relu")(x)
    x = layers.Dense(output_dim, use_bias=not last_batch_norm, name="out")(x)
    if last_batch_norm:
        x = batchnorm.batch_norm("out_bn", center=False, scale=False)(x)
    return keras.Model(inputs, x, name=name)


def stack(input_shape, *models, name):
    """Chains models into one functional model images -> models[-1] output."""
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    for model in models:
        x = model(x)
    return keras.Model(inputs, x, name=name)
