"""The whole train step compiles with XLA (jit_compile=True) and runs two steps (the TPU path: no host
ops, static shapes), and computes what the uncompiled step computes, on a set of (framework, branch)
cases that covers every piece of code the train step can run. Three cases augment on the device
(the step begins by finishing the packed views: flip, colour jitter, grayscale, blur, solarize,
normalise, BYOL's recipe; no blur at 16 px): MoCo v2 + none (two views, one step per call), MoCo v2 +
MixMask (two views, two steps per call) and BYOL + MSCN (three views, two steps per call). The
augmentation's graph depends only on the number of views, not on the framework or branch, so these
cover it (on every case it added ~6 s of compile to each); the other cases are fed the host's views.
The cases:

* every branch on MoCo v2: each branch's ops (masks, mixtures, filters, saliency) in the step;
* every framework with MixMask: each framework's `embed_query` / `branch_per_sample_loss`, which
  every mixing branch (MixMask, Un-Mix, MixMask*, erase) goes through alike;
* the branches that call framework-specific hooks, on every framework that has them: MSCN's
  views (`embed_views` / `pair_loss` / `pair_targets`) on all five; the saliency branch's hard
  negatives (`embed_negative` / `negative_logits`) on SimCLR, and without them on BYOL.

Two cases run both steps in one call (steps_per_execution=2: the trainer's unrolled multi-step
function, compiled as a whole), MoCo v2 + MixMask and BYOL + MSCN; the others one step per call,
which compiles in about half the time (the unrolled function holds two copies of the step).

(Each case compiles in 7-28 s here; the full 5 x 7 product repeated the shared paths at ~10 minutes of
CPU, so the suite keeps the covering set; `test_cases_cover_every_framework_and_branch` guards it.)"""

import keras
import numpy as np
import pytest

from mixmask_tf import augment, backbones, branches, registry
from mixmask_tf import data as data_lib
from mixmask_tf.models import build_trainer

pytestmark = pytest.mark.slow

SHAPE = (16, 16, 3)  # (the blur of the views compiles with XLA in tests/mixmask_tf/augment/test_device_augment.py)
SMALL = {"mocov1": dict(embedding_dim=8, queue_size=32), "mocov2": dict(embedding_dim=8, queue_size=32),
         "simclr": dict(embedding_dim=8, hidden_dim=16), "byol": dict(embedding_dim=8, hidden_dim=16),
         "simsiam": dict(embedding_dim=8, hidden_dim=16)}
BRANCH_OPTIONS = {"none": {}, "mixmask": dict(grid_size=4), "unmix": {}, "mixmask_unmix": dict(grid_size=4),
                  "erase": dict(grid_size=4), "mscn": dict(grid_size=4, extra_views=1), "saliency": dict(fill="blur")}
NO_NEGATIVES = ("byol", "simsiam")  # the saliency branch trains there without its hard negatives


def _fit(framework, branch_name, jit, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    options = dict(BRANCH_OPTIONS[branch_name])
    if branch_name == "saliency" and framework in NO_NEGATIVES:
        options["hard_negatives"] = 0
    branch = branches.build_branch(branch_name, **options)
    # DEVICE_AUGMENT: the views are finished inside the step (augmentation on the device): BYOL's recipe
    # has every op. Never for the saliency branch: its foreground threshold (mean - 0.6 std of the
    # localisation map) flips a cell on the 4e-6 by which XLA's finished views differ from the plain
    # step's (seen: SimCLR 1.1e-3 on a weight); fed the host's views, both steps see the same images.
    augment_on = "device" if (framework, branch_name) in DEVICE_AUGMENT else "host"
    views = augment.TwoViewAugment.from_preset("byol", SHAPE[:2], 3, (0.5,) * 3, (0.25,) * 3,
                                               extra_views=branch.extra_views)
    model = build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=branch, seed=1,
                          device_augment=views if augment_on == "device" else None, **SMALL[framework])
    model.watch_stop_requests = True
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=jit,
                  steps_per_execution=steps_per_execution)
    images = np.random.default_rng(0).integers(0, 256, (16, 20, 20, 3), dtype=np.uint8)
    data = data_lib.make_pretrain_dataset(images, 8, views, seed=2, start_epoch=0, augment_on=augment_on)
    history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0).history
    return model, history


CASES = sorted({("mocov2", b) for b in BRANCH_OPTIONS} | {(f, "mixmask") for f in SMALL}
               | {(f, "mscn") for f in SMALL} | {("simclr", "saliency"), ("byol", "saliency")})


def test_cases_cover_every_framework_and_branch():
    assert set(SMALL) == set(registry.FRAMEWORKS) and set(BRANCH_OPTIONS) == set(registry.BRANCHES)
    assert {b for f, b in CASES if f == "mocov2"} == set(BRANCH_OPTIONS)
    assert {f for f, b in CASES if b == "mixmask"} == {f for f, b in CASES if b == "mscn"} == set(SMALL)
    # The hard-negative hooks on a framework with negatives other than MoCo, and the refusal path.
    assert {f for f, b in CASES if b == "saliency"} == {"mocov2", "simclr", "byol"}
    assert MULTI_STEP <= set(CASES)
    # The device augmentation: two views and three (MSCN), one step per call and two, no saliency case.
    assert DEVICE_AUGMENT <= set(CASES) and not {b for f, b in DEVICE_AUGMENT} & {"saliency"}
    assert {b == "mscn" for f, b in DEVICE_AUGMENT} == {True, False} and MULTI_STEP <= DEVICE_AUGMENT
    assert DEVICE_AUGMENT - MULTI_STEP


MULTI_STEP = {("mocov2", "mixmask"), ("byol", "mscn")}
DEVICE_AUGMENT = MULTI_STEP | {("mocov2", "none")}


@pytest.mark.parametrize("framework, branch_name", CASES)
def test_xla_step_compiles_and_matches(framework, branch_name):
    steps_per_execution = 2 if (framework, branch_name) in MULTI_STEP else 1
    compiled, history = _fit(framework, branch_name, jit=True, steps_per_execution=steps_per_execution)
    assert compiled.jit_compile and int(compiled.steps_per_execution) == steps_per_execution
    assert int(compiled.optimizer.iterations.numpy()) == 2
    assert np.all(np.isfinite(history["loss"]))
    plain, plain_history = _fit(framework, branch_name, jit=False)
    np.testing.assert_allclose(history["loss"], plain_history["loss"], rtol=2e-3, atol=2e-4)
    # Two SGD steps: XLA's fused kernels round differently (seen up to 3e-4 on a weight).
    for w, a, b in zip(plain.weights, plain.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=1e-3, err_msg=f"{framework}+{branch_name}: {w.path}")
