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


def gaussian_kernel_np(sigma, radius):
    """float64 [2r + 1]: exp(-t^2 / 2 sigma^2) for t = -r..r, normalised to sum 1."""
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-t * t / (2.0 * sigma * sigma))
    return k / k.sum()


def gaussian_blur_np(images, sigma, radius, mode="reflect"):
    """Gaussian blur of [N, H, W, C] (or one [H, W, C]) images in float64: ``np.pad(mode=mode)``
    ("reflect": the edge pixel is not repeated) then an explicit 2-D correlation with the
    outer-product kernel, a loop over the (2r + 1)^2 taps."""
    x = np.asarray(images, np.float64)
    single = x.ndim == 3
    if single:
        x = x[None]
    k = gaussian_kernel_np(sigma, radius)
    kernel = np.outer(k, k)
    padded = np.pad(x, [(0, 0), (radius, radius), (radius, radius), (0, 0)], mode=mode)
    n, h, w, c = x.shape
    out = np.zeros((n, h, w, c))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += kernel[dy, dx] * padded[:, dy:dy + h, dx:dx + w, :]
    return out[0] if single else out


def binomial_tol(p, n, sigmas=4.0):
    """``sigmas`` standard deviations of a Binomial(n, p) fraction (0 when p is 0 or 1)."""
    return sigmas * np.sqrt(p * (1.0 - p) / n)


def changed_images(outs, ref, atol=1e-6):
    """[N] bool: which of the N images in ``outs`` differ from ``ref`` (broadcast) by more than atol."""
    return np.abs(np.asarray(outs) - ref).reshape(len(outs), -1).max(axis=1) > atol


def normal_images(shape, seed=0):
    """float32 standard-normal images of ``shape`` from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)
