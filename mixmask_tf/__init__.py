"""mixmask-tf: masked and mixed siamese self-supervised pretraining of ConvNets (Keras 3 / TF).

Modules: masks, mixing, losses, augment (pure TF functions); branches (MixMask, ...);
backbones; models (framework trainers, `keras.Model` subclasses); data; knn; checkpoint.
"""

__version__ = "0.1.0"
