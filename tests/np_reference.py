"""Independent NumPy references shared by several test files."""

import colorsys

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


# ----------------------------------------------------------------------------- augmentation views

GRAY = np.array([0.2989, 0.5870, 0.1140])  # tf.image.rgb_to_grayscale's weights




def np_resize(img, out_h, out_w):
    """Bilinear resize with half-pixel centres, sample positions clamped to the image."""
    def axis(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(pos)
        return (np.maximum(lo, 0).astype(int), np.minimum(np.ceil(pos), n_in - 1).astype(int), pos - lo)

    y0, y1, wy = axis(img.shape[0], out_h)
    x0, x1, wx = axis(img.shape[1], out_w)
    top = img[y0][:, x0] * (1 - wx)[None, :, None] + img[y0][:, x1] * wx[None, :, None]
    bottom = img[y1][:, x0] * (1 - wx)[None, :, None] + img[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def np_gray(x):
    return x if x.shape[-1] == 1 else (x @ GRAY)[..., None]


def np_hue(x, delta):
    flat = x.reshape(-1, 3)
    out = np.array([colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
                    for h, s, v in (colorsys.rgb_to_hsv(*p) for p in flat)])
    return np.clip(out.reshape(x.shape), 0, 1)


def np_blur(x, sigma, radius):
    taps = np.arange(-radius, radius + 1)
    k = np.exp(-taps ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    p = np.pad(x, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    rows = sum(k[i] * p[i:i + x.shape[0]] for i in range(len(k)))
    return sum(k[i] * rows[:, i:i + x.shape[1]] for i in range(len(k)))


def np_crop(img, p, config):
    """The crop stage of one uint8 image: the resized crop in [0, 1], float64 (not rounded)."""
    x = img.astype(np.float64) / 255.0
    return np_resize(x[p["top"]:p["top"] + p["crop_h"], p["left"]:p["left"] + p["crop_w"]], *config.size)


def np_view(crop, p, config):
    """The finish stage of one view (flip, jitter, grayscale, blur, solarize) of a crop in [0, 1],
    with the parameters p (numpy values of one row)."""
    x = np.asarray(crop, np.float64)
    if p["flip"]:
        x = x[:, ::-1]
    c = x.shape[-1]

    def gray(v):
        if c == 3 and config.grayscale_p > 0 and p["gray"]:
            return np.repeat(np_gray(v), 3, axis=-1)
        return v

    ops = []
    if config.brightness > 0:
        ops.append((0, lambda v: np.clip(v * p["brightness"], 0, 1)))
    if config.contrast > 0:
        ops.append((1, lambda v: np.clip((v - np_gray(v).mean()) * p["contrast"] + np_gray(v).mean(), 0, 1)))
    if c == 3 and config.saturation > 0:
        ops.append((2, lambda v: np.clip((v - np_gray(v)) * p["saturation"] + np_gray(v), 0, 1)))
    if c == 3 and config.hue > 0:
        ops.append((3, lambda v: np_hue(v, p["hue"])))
    if config.grayscale_before_jitter:
        x = gray(x)
    if p["jitter"] and config.jitter_p > 0:
        for i, op in sorted(ops, key=lambda o: p["order_keys"][o[0]]):
            x = op(x)
    if not config.grayscale_before_jitter:
        x = gray(x)
    radius = int(config.size[0] * 0.1) // 2
    if config.blur_p > 0 and radius > 0 and p["blur"]:
        x = np_blur(x, p["sigma"], radius)
    if config.solarize_p > 0 and p["solarize"]:
        x = np.where(x >= 0.5, 1 - x, x)
    return x
