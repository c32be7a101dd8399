"""mixmask-tf: masked and mixed siamese self-supervised pretraining of ConvNets (Keras 3 / TF).

Subpackages and modules (see the README's "Layout"): ``seeds`` (stateless seed derivation),
``ops/`` (the branches' ops, one module per method: grid masks, mixtures, MSCN masks, saliency
masks, the Gaussian blur and high-pass filter), ``losses``, ``augment/`` (pure TF functions);
``branches/`` (MixMask, Un-Mix, ...); ``backbones``; ``models/`` (framework trainers,
``keras.Model`` subclasses); ``data/``; ``knn``, ``linear_probe``, ``finetune``, ``metrics``
(top-k accuracy), ``encoders``; ``checkpoint``; ``registry``
(every selectable name) and ``checks`` (argument and branch-option checks), both readable without
TensorFlow.

Importing the package itself imports nothing (no TensorFlow), so the command-line tools can read
the registries and set TensorFlow's environment before TensorFlow starts. The BatchNorm layer the
backbones use is registered with Keras by ``mixmask_tf.batchnorm``, which every module that
builds or loads a model imports (``backbones``, ``models``, ``encoders``); import one of them
before calling ``keras.models.load_model`` on a saved backbone yourself.
"""

__version__ = "0.1.0"
