"""The clean loss over V >= 2 views (MSCN's extra views), per framework, against NumPy.

`SiameseTrainer.views_forward` is the mean over every pair i < j of the framework's loss of two
views. Here each framework's embeddings are read from its own encoders (inference mode, so
BatchNorm is deterministic) and the loss is recomputed in NumPy from the definitions:
MoCo InfoNCE with the queue (asymmetric: q_i against k_j; symmetric: both directions), SimCLR
NT-Xent over each pair's 2N views, BYOL 2 − 2cos symmetrised, SimSiam −cos symmetrised and
halved. With V = 2 the result is the framework's own clean loss (its `pair_loss`).
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from mixmask_tf import backbones
from mixmask_tf.models import build_trainer

SHAPE = (12, 12, 3)
SMALL = {
    "mocov2": dict(embedding_dim=8, queue_size=32, temperature=0.2),
    "mocov1": dict(embedding_dim=8, queue_size=32, temperature=0.1, symmetric=True),
    "simclr": dict(embedding_dim=8, hidden_dim=16, temperature=0.2),
    "byol": dict(embedding_dim=8, hidden_dim=16),
    "simsiam": dict(embedding_dim=8, hidden_dim=16),
}


def _norm(x):
    x = np.asarray(x, np.float64)  # as tf.math.l2_normalize: x / sqrt(max(|x|², 1e-12))
    return x / np.sqrt(np.maximum((x ** 2).sum(1, keepdims=True), 1e-12))


def _logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _moco_pair(q, k, queue, t):
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue.T], axis=1) / t
    return np.mean(_logsumexp(logits, 1) - logits[:, 0])


def _nt_xent_pair(za, zb, t):
    n = len(za)
    z = np.concatenate([za, zb])
    sim = z @ z.T / t
    np.fill_diagonal(sim, -np.inf)
    positive = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    per = _logsumexp(sim, 1) - sim[np.arange(2 * n), positive]
    return 0.5 * (per[:n].mean() + per[n:].mean())


def _reference(framework, model, views):
    """NumPy loss over every pair of views, from the model's encoders in inference mode."""
    pairs = list(itertools.combinations(range(len(views)), 2))
    if framework.startswith("moco"):
        q = [_norm(model.query_encoder(v, training=False)) for v in views]
        k = [_norm(model.key_encoder(v, training=False)) for v in views]
        queue, t = np.asarray(model.queue, np.float64), model.temperature
        per_pair = [_moco_pair(q[i], k[j], queue, t) + (_moco_pair(q[j], k[i], queue, t) if model.symmetric else 0)
                    for i, j in pairs]
    elif framework == "simclr":
        z = [_norm(model.encoder(v, training=False)) for v in views]
        per_pair = [_nt_xent_pair(z[i], z[j], model.temperature) for i, j in pairs]
    elif framework == "byol":
        p = [_norm(model.predictor(model.online_encoder(v, training=False), training=False)) for v in views]
        z = [_norm(model.target_encoder(v, training=False)) for v in views]
        per_pair = [np.mean(2 - 2 * (p[i] * z[j]).sum(1)) + np.mean(2 - 2 * (p[j] * z[i]).sum(1)) for i, j in pairs]
    else:
        z = [model.encoder(v, training=False) for v in views]
        p = [_norm(model.predictor(zz, training=False)) for zz in z]
        z = [_norm(zz) for zz in z]
        per_pair = [0.5 * (np.mean(-(p[i] * z[j]).sum(1)) + np.mean(-(p[j] * z[i]).sum(1))) for i, j in pairs]
    return float(np.mean(per_pair))


@pytest.mark.parametrize("framework", sorted(SMALL))
@pytest.mark.parametrize("num_views", [2, 4])
def test_loss_over_every_pair_of_views_matches_numpy(framework, num_views):
    keras.utils.set_random_seed(1)
    model = build_trainer(framework, backbones.small_convnet(SHAPE, width=4), seed=0, **SMALL[framework])
    rng = np.random.default_rng(num_views)
    views = tuple(tf.constant(rng.normal(size=(6,) + SHAPE).astype(np.float32)) for _ in range(num_views))
    loss, _, _, _ = model.views_forward(views, training=False)
    np.testing.assert_allclose(float(loss), _reference(framework, model, views), rtol=2e-5, atol=2e-6)
    if num_views == 2:  # the framework's own clean loss of the two views
        clean = model.pair_loss(*model.embed_views(views, training=False))
        assert float(clean) == float(loss)


def test_moco_targets_and_enqueued_keys_come_from_the_main_pair():
    keras.utils.set_random_seed(1)
    model = build_trainer("mocov2", backbones.small_convnet(SHAPE, width=4), seed=0, **SMALL["mocov2"])
    rng = np.random.default_rng(0)
    views = tuple(tf.constant(rng.normal(size=(6,) + SHAPE).astype(np.float32)) for _ in range(4))
    _, targets, extras, _ = model.views_forward(views, training=False)
    k2 = _norm(model.key_encoder(views[1], training=False))
    np.testing.assert_allclose(np.asarray(targets), k2, atol=1e-6)
    assert len(extras) == 1
    np.testing.assert_allclose(np.asarray(extras[0]), k2, atol=1e-6)


def test_wrong_number_of_views_is_a_clear_error():
    from mixmask_tf import branches

    model = build_trainer("simclr", backbones.small_convnet(SHAPE, width=4),
                          branch=branches.build_branch("mscn", grid_size=3), **SMALL["simclr"])
    x = tf.zeros((4,) + SHAPE)
    with pytest.raises(ValueError, match=r"takes 4 views per image .* extra_views=2"):
        model.compute_losses(x, x, training=False)


class _OneNegative:
    """A branch stub whose transform adds view 2 reversed as one hard negative per sample (scale 2)."""

    name = "stub"
    term_names = ()
    stat_names = ("stub_logit",)
    extra_views = 0
    uses_negatives = True
    changes_views = True

    def input_filter_for(self, image_shape):
        return None

    def validate(self, image_shape):
        pass

    def bind(self, trainer):
        pass

    def prepare_views(self, views, seed):
        from mixmask_tf import branches

        return branches.ViewsOutput(tuple(views), {}, (branches.NegativeBatch(views[1][::-1], 2.0, "stub"),))

    def __call__(self, images, seed):
        from mixmask_tf import branches

        return branches.BranchOutput((), {})

    def get_config(self):
        return {"name": self.name}


@pytest.mark.parametrize("framework", ["mocov2", "simclr"])
def test_hard_negatives_join_the_query_logits(framework):
    keras.utils.set_random_seed(1)
    model = build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=_OneNegative(), seed=0,
                          **SMALL[framework])
    model.compile(optimizer="sgd")
    rng = np.random.default_rng(5)
    x1, x2 = (tf.constant(rng.normal(size=(6,) + SHAPE).astype(np.float32)) for _ in range(2))
    result, stats, _ = model.compute_losses(x1, x2, training=False)
    negative = x2[::-1]
    t = model.temperature
    if framework == "mocov2":
        q = _norm(model.query_encoder(x1, training=False))
        k, n = (_norm(model.key_encoder(v, training=False)) for v in (x2, negative))
        logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ np.asarray(model.queue, np.float64).T,
                                 2.0 * (q * n).sum(1, keepdims=True)], axis=1) / t
        expected = np.mean(_logsumexp(logits, 1) - logits[:, 0])
        hard = 2.0 * (q * n).sum(1) / t
    else:
        z1, z2, n = (_norm(model.encoder(v, training=False)) for v in (x1, x2, negative))
        z = np.concatenate([z1, z2])
        sim = z @ z.T / t
        np.fill_diagonal(sim, -np.inf)
        hard = 2.0 * (z1 * n).sum(1) / t
        rows = np.concatenate([sim, np.concatenate([hard, np.full(6, -np.inf)])[:, None]], axis=1)  # anchors of view 1 only
        positive = np.concatenate([np.arange(6, 12), np.arange(6)])
        per = _logsumexp(rows, 1) - sim[np.arange(12), positive]
        expected = 0.5 * (per[:6].mean() + per[6:].mean())
    np.testing.assert_allclose(float(result["loss_clean"]), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(float(stats["stub_logit"]), hard.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("framework", ["byol", "simsiam"])
def test_frameworks_without_negatives_refuse_a_branch_that_adds_them(framework):
    with pytest.raises(ValueError, match="has no negatives"):
        build_trainer(framework, backbones.small_convnet(SHAPE, width=4), branch=_OneNegative(), **SMALL[framework])
