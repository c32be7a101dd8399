"""Gradient flow of the branch terms into their clean targets, per framework.

The branch terms score an extra query (a mixture of view 1) against the clean targets the
framework's `views_forward` returns. Their only path to the key view x2 runs through those
targets, so the gradient of the branch terms with respect to x2 tells whether the targets carry
gradient: SimCLR's in-batch embeddings do (as in its NT-Xent, README "Decisions where papers
and code leave room"), MoCo's keys, BYOL's EMA-target projections and SimSiam's stop-gradient z2
do not.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones, branches
from mixmask_tf.models import build_trainer

SHAPE = (16, 16, 3)
SMALL = {
    "mocov1": dict(embedding_dim=8, queue_size=32),
    "mocov2": dict(embedding_dim=8, queue_size=32),
    "simclr": dict(embedding_dim=8, hidden_dim=16),
    "byol": dict(embedding_dim=8, hidden_dim=16),
    "simsiam": dict(embedding_dim=8, hidden_dim=16),
}
# (framework, extra options, whether the branch terms reach x2 through the targets)
CASES = [
    ("simclr", {}, True),
    ("simclr", dict(mix_target="view1"), False),  # targets are z1: no path to x2 at all
    ("mocov1", {}, False),
    ("mocov2", {}, False),
    ("mocov2", dict(symmetric=True), False),  # q2 trains on x2 in the clean loss, the keys do not
    ("byol", {}, False),
    ("simsiam", {}, False),
]


def _trainer(framework, options, branch_name="mixmask"):
    keras.utils.set_random_seed(0)
    branch = branches.build_branch(branch_name, grid_size=4)
    model = build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=branch, seed=3,
                          **SMALL[framework], **options)
    model.compile(optimizer=keras.optimizers.SGD(0.1))  # step_seed reads the optimizer's step
    return model


def _branch_loss(model, x1, x2):
    result, _, _ = model.compute_losses(x1, x2, training=True)
    return result["loss_mix"] + result["loss_switch"], result["loss_clean"]


def _views(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n,) + SHAPE).astype("float32")),
            tf.constant(rng.normal(size=(n,) + SHAPE).astype("float32")))


@pytest.mark.parametrize("framework, options, reaches_targets", CASES,
                         ids=[f"{f}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for f, o, _ in CASES])
def test_branch_gradient_into_the_key_view(framework, options, reaches_targets):
    model = _trainer(framework, options)
    x1, x2 = _views()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x2)
        branch_loss, clean_loss = _branch_loss(model, x1, x2)
    grad = tape.gradient(branch_loss, x2, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()
    # The targets do depend on x2 (else a zero gradient would prove nothing; view1 targets don't) ...
    other_x2 = x2 + 0.5 * _views(seed=1)[1]
    change = abs(float(_branch_loss(model, x1, other_x2)[0]) - float(branch_loss))
    assert change == 0.0 if options.get("mix_target") == "view1" else change > 1e-5
    # ... and the branch terms backpropagate into them only where the framework says so.
    if reaches_targets:
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-6, np.abs(grad).max()
        # Every image's target gets gradient (each x2[i] is the positive of q_mix[i]).
        assert np.all(np.abs(grad).reshape(len(grad), -1).max(axis=1) > 0)
    else:
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
    if framework == "simclr" or options.get("symmetric"):
        # Sanity: the clean loss itself trains on x2 in these frameworks.
        clean_grad = tape.gradient(clean_loss, x2, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        assert np.abs(clean_grad.numpy()).max() > 1e-6


def test_simclr_branch_gradient_on_the_weights_includes_the_target_side():
    # The branch terms' gradient on the encoder = the query-side part + the target-side part;
    # with the targets stopped, only the query side is left, and the two differ.
    model = _trainer("simclr", {})
    x1, x2 = _views()
    variables = model.online_variables()
    with tf.GradientTape() as tape:
        full, _ = _branch_loss(model, x1, x2)
    full_grads = tape.gradient(full, variables)

    class Stopped(type(model)):
        def views_forward(self, views, training, negatives=()):
            loss, (keys, offset), extras, stats = super().views_forward(views, training, negatives)
            return loss, (tf.stop_gradient(keys), offset), extras, stats

    stopped = Stopped(model.backbone, branch=model.branch, seed=3, **SMALL["simclr"])
    stopped.set_weights(model.get_weights())
    stopped.compile(optimizer=keras.optimizers.SGD(0.1))
    with tf.GradientTape() as tape:
        query_only, _ = _branch_loss(stopped, x1, x2)
    query_grads = tape.gradient(query_only, stopped.online_variables())
    np.testing.assert_allclose(float(full), float(query_only), rtol=1e-6)  # same loss value
    diff = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(full_grads, query_grads))
    scale = max(float(tf.reduce_max(tf.abs(a))) for a in full_grads)
    assert diff > 1e-3 * scale, (diff, scale)


@pytest.mark.parametrize("branch_name", ["unmix", "erase"])
def test_simclr_targets_carry_gradient_with_every_branch(branch_name):
    keras.utils.set_random_seed(0)
    options = {} if branch_name == "unmix" else dict(grid_size=4)
    model = build_trainer("simclr", backbones.small_convnet(SHAPE, width=4),
                          branch=branches.build_branch(branch_name, **options), seed=3, **SMALL["simclr"])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x1, x2 = _views()
    with tf.GradientTape() as tape:
        tape.watch(x2)
        result, _, _ = model.compute_losses(x1, x2, training=True)
        branch_loss = tf.add_n([v for k, v in result.items() if k not in ("loss", "loss_clean")])
    grad = tape.gradient(branch_loss, x2, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert np.abs(grad.numpy()).max() > 1e-6
