"""Independent NumPy references shared by several test files."""

import numpy as np


def np_softmax_regression(x, y, classes, config, seed):
    """Same init, batch order and lr schedule; NumPy gradients of the mean cross-entropy."""
    rng = np.random.default_rng([seed, 1 << 20])
    w = rng.normal(0.0, config.init_std, (x.shape[1], classes)).astype(np.float32).astype(np.float64)
    b = np.zeros(classes)
    mean, std = (x.mean(0), np.maximum(x.std(0), 1e-6)) if config.standardize else (0.0, 1.0)
    z_all = (x - mean) / std
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for epoch in range(config.epochs):
        if config.schedule == "step":
            lr = config.learning_rate * config.gamma ** sum(epoch >= m for m in config.milestones)
        else:
            lr = config.learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / config.epochs))
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for s in range(0, len(x), config.batch_size):
            idx = order[s:s + config.batch_size]
            z = z_all[idx]
            logits = z @ w + b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            gw = z.T @ p / len(idx) + config.weight_decay * w
            gb = p.mean(0) + config.weight_decay * b
            vw, vb = config.momentum * vw + gw, config.momentum * vb + gb
            uw, ub = (gw + config.momentum * vw, gb + config.momentum * vb) if config.nesterov else (vw, vb)
            w, b = w - lr * uw, b - lr * ub
    return w, b, (x - mean) / std @ w + b
