"""The augmentation presets (mixmask_tf.augment.presets) against the reference recipes."""

import dataclasses

import pytest

from mixmask_tf import augment, registry

_JITTER_04 = dict(brightness=0.4, contrast=0.4, saturation=0.4)
_RATIO = (3 / 4, 4 / 3)
# Reference numbers of every preset for 3-channel images: (view 1, view 2) field values.
_MOCOV1 = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.4,
               jitter_p=1.0, grayscale_p=0.2, blur_p=0.0, solarize_p=0.0,
               grayscale_before_jitter=True)
_MOCOV2 = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.1,
               jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0,
               grayscale_before_jitter=False)
_SIMCLR = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.8,
               contrast=0.8, saturation=0.8, hue=0.2, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5,
               solarize_p=0.0, grayscale_before_jitter=False)
_CIFAR = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, **_JITTER_04, hue=0.1,
              jitter_p=0.8, grayscale_p=0.2, blur_p=0.0, solarize_p=0.0,
              grayscale_before_jitter=False)
_FASHION_MNIST = dict(crop_scale=(0.2, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.4,
                      contrast=0.4, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0,
                      blur_p=0.0, solarize_p=0.0, grayscale_before_jitter=False)
_BYOL = dict(crop_scale=(0.08, 1.0), crop_ratio=_RATIO, flip=True, brightness=0.4, contrast=0.4,
             saturation=0.2, hue=0.1, jitter_p=0.8, grayscale_p=0.2,
             grayscale_before_jitter=False)
REFERENCE_PRESETS = {
    "fashion_mnist": (_FASHION_MNIST, _FASHION_MNIST),
    "cifar": (_CIFAR, _CIFAR),
    "mocov1": (_MOCOV1, _MOCOV1),
    "mocov2": (_MOCOV2, _MOCOV2),
    "simclr": (_SIMCLR, _SIMCLR),
    "byol": (dict(_BYOL, blur_p=1.0, solarize_p=0.0), dict(_BYOL, blur_p=0.1, solarize_p=0.2)),
}
COLOUR_ONLY = ("saturation", "hue", "grayscale_p")


def _fields(config):
    """The ViewConfig's fields other than ``size``, as a dict."""
    out = dataclasses.asdict(config)
    del out["size"]
    return out


def test_preset_names_cover_the_reference_table():
    assert set(augment.PRESET_NAMES) == set(REFERENCE_PRESETS)
    assert set(augment.PRESETS) == set(augment.PRESET_VIEWS) == set(augment.PRESET_NAMES)
    assert len(augment.PRESET_NAMES) == len(set(augment.PRESET_NAMES))


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", sorted(REFERENCE_PRESETS))
def test_preset_fields_match_reference(name, channels):
    views = augment.preset_views(name, (32, 24), channels)
    assert len(views) == 2
    for view, ref in zip(views, REFERENCE_PRESETS[name]):
        assert isinstance(view, augment.ViewConfig) and view.size == (32, 24)
        expected = dict(ref)
        if channels == 1:  # colour-only ops are disabled; brightness / contrast are kept
            expected.update({k: 0.0 for k in COLOUR_ONLY})
        assert _fields(view) == expected
    # preset() and PRESETS return the first view.
    assert augment.preset(name, (32, 24), channels) == views[0]
    assert augment.PRESETS[name]((32, 24), channels) == views[0]
    assert augment.preset(name, 20, channels).size == (20, 20)


def test_byol_views_differ_exactly_in_blur_and_solarize():
    for channels in (3, 1):
        view1, view2 = augment.preset_views("byol", 224, channels)
        f1, f2 = _fields(view1), _fields(view2)
        assert {k for k in f1 if f1[k] != f2[k]} == {"blur_p", "solarize_p"}
        assert (view1.blur_p, view1.solarize_p) == (1.0, 0.0)
        assert (view2.blur_p, view2.solarize_p) == (0.1, 0.2)
    for name in ("fashion_mnist", "cifar", "mocov1", "mocov2", "simclr"):
        view1, view2 = augment.preset_views(name, 32, 3)
        assert view1 == view2


def test_preset_errors():
    for get in (augment.preset, augment.preset_views):
        with pytest.raises(ValueError) as err:
            get("imagenet", 32, 3)
        for name in augment.PRESET_NAMES:
            assert name in str(err.value)
    with pytest.raises(ValueError, match="byol.*cifar.*fashion_mnist.*mocov1.*mocov2.*simclr"):
        augment.preset("imagenet", 32, 3)
    with pytest.raises(ValueError, match="channels"):
        augment.preset_views("simclr", 32, 4)


def test_presets_are_the_registry():
    assert augment.PRESET_NAMES == tuple(registry.AUGMENT_PRESETS)
    for name in registry.AUGMENT_PRESETS:
        assert registry.resolve(registry.AUGMENT_PRESETS, name)(32, 3) == augment.preset_views(name, 32, 3)
        assert augment.PRESET_VIEWS[name](32, 1) == augment.preset_views(name, 32, 1)
