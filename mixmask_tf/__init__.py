"""mixmask-tf: masked and mixed siamese self-supervised pretraining of ConvNets (Keras 3 / TF).

Modules: masks, mixing, losses, augment (pure TF functions); branches (MixMask, ...);
backbones; models (framework trainers, `keras.Model` subclasses); data; knn; checkpoint.
"""

__version__ = "0.1.0"

# Registers the BatchNorm layer the backbones use, so that `keras.models.load_model` can read a
# saved backbone once `mixmask_tf` is imported.
from mixmask_tf import batchnorm  # noqa: E402,F401
