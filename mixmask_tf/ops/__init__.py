"""The pure TensorFlow ops of the branches, one module per method (beside ``branches/``).

* ``masks``: the grid masks of MixMask and erase (blocked and discrete), their nearest
  upsampling to pixels and the measured fraction λ.
* ``mixing``: the mixtures of MixMask (``mixmask``), Un-Mix (``unmix``; MixMask* uses both)
  and erase (``erase``), with the permutations that pair the images.
* ``mscn_masks``: the masks of Masked Siamese ConvNets (random grid, focal, channel-independent).
* ``saliency_masks``: saliency-guided masking (saliency maps, foreground cells, cell counts,
  query and hard-negative masks, fills).
* ``filters``: the Gaussian blur (one implementation: MSCN's high-pass input filter, the
  saliency blur fill and the augmentation blur all call :func:`filters.gaussian_blur`) and the
  high-pass filter that travels with an encoder.

Branch -> ops: ``branches.mixmask`` -> ``masks``, ``mixing``; ``branches.unmix`` -> ``mixing``;
``branches.mixmask_unmix`` -> the two above; ``branches.erase`` -> ``masks``, ``mixing``;
``branches.mscn`` -> ``mscn_masks``, ``mixing``, ``filters``; ``branches.saliency`` ->
``saliency_masks``, ``filters``. The algorithms: docs/algorithms.md.

Importing the package imports nothing; import the module you need
(``from mixmask_tf.ops import masks``).
"""
