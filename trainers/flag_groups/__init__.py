"""The command-line flags, one module per component; ``--helpfull`` lists them under these names.

* ``data``: the dataset flags every command shares (which dataset, split, size, channels);
* ``augmentation``: pretraining's two-view augmentation (preset, crop scale);
* ``model``: the backbone and the heads' sizes;
* ``framework``: which siamese framework and its own options (queue, momentum, temperature, EMA);
* ``branch``: which branch (MixMask, Un-Mix, MixMask*, erase) and its mask / mixture options;
* ``optimisation``: optimizer, learning-rate schedule, weight decay, epochs, batch size;
* ``run``: model directory, seed, compilation, monitoring, logging and export.
* ``distribute``: the tf.distribute strategy and the CPU split;
* ``service``: pretraining from a tf.data service's workers (``--data_service``).

Enum choices come from ``mixmask_tf.registry``, which imports no TensorFlow, so parsing the
flags leaves TensorFlow unimported (the commands set its environment first). Each module also
turns its flags into what the library takes (``branch.build_branch()``, ``model.build_backbone``...).
"""


class UserError(Exception):
    """A problem with the user's flags or data: printed without a traceback."""
