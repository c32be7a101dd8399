"""LARS (You et al. 2017), which Keras 3 does not have, as in SimCLR's TF2 `LARSOptimizer`.

For each variable w with gradient g:

    g ← g + weight_decay · w                       (unless w is excluded from decay)
    trust = η · ‖w‖ / ‖g‖ if ‖w‖ > 0 and ‖g‖ > 0, else 1   (1 if w is excluded from adaptation)
    v ← momentum · v + lr · trust · g
    w ← w − v                                       (Nesterov: w ← w − (momentum · v + lr · trust · g))

Exclusions are by variable (never by name): `excluded_variables(model)` lists the BatchNorm
parameters and the biases of a model, found through the layers that own them.
"""

import keras
from keras import ops


def excluded_variables(model):
    """BatchNorm parameters and biases of `model` (nested models included), for LARS exclusions.

    Args:
      model: a Keras model.

    Returns:
      list of variables: every weight of a normalisation layer and every layer's `bias`.
    """
    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                              keras.layers.GroupNormalization)):
            out.extend(layer.trainable_weights)
        elif getattr(layer, "bias", None) is not None and getattr(layer, "use_bias", True):
            out.append(layer.bias)
    return out


def with_decay_exclusions(optimizer, model):
    """Excludes `model`'s normalisation parameters and biases from `optimizer`'s weight decay.

    Uses Keras' ``exclude_from_weight_decay(var_list=...)``: the variables themselves, found through
    the layers that own them (:func:`excluded_variables`), not a regex over names. Call before the
    optimizer is built (before the first step).

    Args:
      optimizer: a Keras optimizer with decoupled ``weight_decay`` (SGD, Adam, AdamW, ...).
      model: the model whose variables it will train.

    Returns:
      the same optimizer.
    """
    optimizer.exclude_from_weight_decay(var_list=excluded_variables(model))
    return optimizer


class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum.

    Args:
      learning_rate: float or schedule.
      momentum: heavy-ball momentum (0.9).
      weight_decay: L2 coefficient added to the gradient before the trust ratio (1e-6 in SimCLR).
      eta: trust coefficient η (0.001).
      nesterov: Nesterov momentum.
      exclude: variables that get neither weight decay nor adaptation (BatchNorm and biases:
        `excluded_variables(model)`); set before the optimizer is built.
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=0.0, eta=0.001, nesterov=False,
                 exclude=(), name="lars", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if momentum < 0 or eta <= 0 or weight_decay < 0:
            raise ValueError(f"LARS needs momentum >= 0, eta > 0, weight_decay >= 0; got {momentum}, {eta}, "
                             f"{weight_decay}")
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.nesterov = bool(nesterov)
        self._excluded = set()
        self.exclude(exclude)

    def exclude(self, variables):
        """Excludes `variables` from weight decay and adaptation (before the optimizer is built)."""
        if self.built and variables:
            raise ValueError("LARS.exclude() must be called before the optimizer is built")
        self._excluded |= {self._var_key(v) for v in variables}

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        grad = ops.cast(gradient, variable.dtype)
        excluded = self._var_key(variable) in self._excluded
        if not excluded:
            if self.lars_weight_decay:
                grad = grad + self.lars_weight_decay * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(grad)))
            trust = ops.where(w_norm > 0, ops.where(g_norm > 0, self.eta * w_norm / ops.maximum(g_norm, 1e-30), 1.0),
                              1.0)
            lr = lr * ops.cast(trust, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(m, self.momentum * m + lr * grad)
        if self.nesterov:
            self.assign_sub(variable, self.momentum * m + lr * grad)
        else:
            self.assign_sub(variable, m)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.lars_weight_decay, "eta": self.eta,
                       "nesterov": self.nesterov})
        return config


class SGDL2(keras.optimizers.SGD):
    """SGD with PyTorch-style (coupled) L2 weight decay: g ← g + l2 · w before momentum.

    Keras' ``weight_decay`` is decoupled (w ← w − lr · wd · w after the step); with momentum m the
    coupled form of the references (``torch.optim.SGD(weight_decay=...)``) decays about 1 / (1 − m)
    times harder (10× at m = 0.9), so the papers' numbers mean this form.

    Args:
      learning_rate, momentum, nesterov: as ``keras.optimizers.SGD``.
      l2: the coupled decay coefficient (5e-4 in the MixMask CIFAR settings).
      exclude: variables that get no decay (e.g. :func:`excluded_variables`).
      **kwargs: other ``keras.optimizers.Optimizer`` arguments (not ``weight_decay``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, l2=0.0, exclude=(), name="sgd_l2",
                 **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("SGDL2 takes l2= (coupled); weight_decay= is Keras' decoupled form")
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        self.l2 = float(l2)
        # _var_key maps a Keras variable, its tf.Variable and a distributed copy to one key.
        self._l2_exclude = {self._var_key(v) for v in exclude}

    def _decays(self, variable):
        return self.l2 > 0 and self._var_key(variable) not in self._l2_exclude

    def update_step(self, gradient, variable, learning_rate):
        if self._decays(variable):
            gradient = keras.ops.add(keras.ops.cast(gradient, variable.dtype),
                                     keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config
