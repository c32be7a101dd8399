"""Tests of mixmask_tf.data: IDX reading, dataset loading, registry and tf.data pipelines."""

import functools
import gzip
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mixmask_tf import augment, data  # noqa: E402

HAVE_FASHION = all(
    os.path.isfile(os.path.join(data.FASHION_MNIST_DIR, f))
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
NO_FASHION = ("Debian package dataset-fashion-mnist not installed (no files in "
              f"{data.FASHION_MNIST_DIR}); `sudo apt-get install dataset-fashion-mnist`")


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.float32, 0x0D)])
def test_read_idx_roundtrip(tmp_path, compress, dtype, code):
    array = (np.arange(2 * 3 * 4) * 3 - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    payload = _idx_bytes(array, code)
    path = tmp_path / ("x.idx" + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(payload) if compress else payload)
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)


def test_read_idx_gzip_detected_by_magic_not_name(tmp_path):
    labels = np.array([1, 2, 3], np.uint8)
    path = tmp_path / "labels-no-extension"
    path.write_bytes(gzip.compress(_idx_bytes(labels, 0x08)))
    np.testing.assert_array_equal(data.read_idx(path), labels)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated(tmp_path, compress):
    payload = _idx_bytes(np.zeros((10, 5, 5), np.uint8), 0x08)[:-7]
    path = tmp_path / "truncated-images.idx"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(data.CorruptDatasetError, match="truncated-images.idx.*truncated"):
        data.read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(_idx_bytes(np.arange(1000, dtype=np.uint8), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.CorruptDatasetError, match="cut.gz"):
        data.read_idx(path)


@pytest.mark.parametrize("header", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00",
                                    b"PK\x03\x04"])
def test_read_idx_bad_magic(tmp_path, header):
    path = tmp_path / "bad-magic.idx"
    path.write_bytes(header + b"\x00\x00\x00\x02" + b"\x01\x02")
    with pytest.raises(data.CorruptDatasetError, match="bad-magic.idx.*magic"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(_idx_bytes(np.zeros(4, np.uint8), 0x08) + b"\x00")
    with pytest.raises(data.CorruptDatasetError, match="long.idx"):
        data.read_idx(path)


# ----------------------------------------------------------------------------- Fashion-MNIST


def test_load_fashion_mnist_missing_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DatasetNotFoundError,
                       match="apt-get install dataset-fashion-mnist") as info:
        data.load_fashion_mnist("train", data_dir=str(missing))
    assert str(missing) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_load_fashion_mnist_missing_file(tmp_path):
    with pytest.raises(data.DatasetNotFoundError,
                       match="train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist("train", data_dir=str(tmp_path))


def test_load_fashion_mnist_from_custom_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images, 8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 8))  # raw also works
    x, y = data.load_fashion_mnist("test", data_dir=str(tmp_path), limit=5)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], images[:5])
    np.testing.assert_array_equal(y, labels[:5])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels[:6], 8))
    with pytest.raises(data.CorruptDatasetError, match="labels"):
        data.load_fashion_mnist("test", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        data.load_fashion_mnist("validation", data_dir=str(tmp_path))


@pytest.mark.skipif(not HAVE_FASHION, reason=NO_FASHION)
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_fashion_mnist_real_slice(split):
    x, y = data.load_fashion_mnist(split, limit=1000)
    assert x.shape == (1000, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (1000,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() <= 9 and len(np.unique(y)) == 10
    assert 0 < x.mean() < 255


@pytest.mark.skipif(not HAVE_FASHION, reason=NO_FASHION)
def test_fashion_mnist_mean_std_match_train_set():
    x, _ = data.load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28, 1)
    pixels = x.astype(np.float64) / 255.0
    info = data.FASHION_MNIST_INFO
    np.testing.assert_allclose(info.mean, [pixels.mean()], atol=6e-5)
    np.testing.assert_allclose(info.std, [pixels.std()], atol=6e-5)


def test_registry_info_and_unknown_name():
    info = data.FASHION_MNIST_INFO
    assert info.image_shape == (28, 28, 1) and info.num_classes == 10
    assert len(info.class_names) == 10 and len(info.mean) == len(info.std) == 1
    with pytest.raises(ValueError, match="fashion_mnist.*synthetic"):
        data.load_dataset("imagenet")
    assert {"fashion_mnist", "synthetic"} <= set(data.DATASETS)


def test_load_dataset_fashion_missing_dir(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path / "none"))


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_dataset_shapes_and_determinism():
    x, y = data.synthetic_dataset(50, (12, 16, 3), num_classes=5, seed=3)
    assert x.shape == (50, 12, 16, 3) and x.dtype == np.uint8
    assert y.shape == (50,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [10] * 5)
    x2, y2 = data.synthetic_dataset(50, (12, 16, 3), num_classes=5, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x1, y1, info = data.load_dataset("synthetic", "test", limit=20, image_shape=(8, 8, 1),
                                     num_classes=3)
    assert x1.shape == (20, 8, 8, 1) and info.image_shape == (8, 8, 1)
    assert info.num_classes == 3 and len(info.mean) == 1 and info.std[0] > 0


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_synthetic_dataset_is_learnable(shape):
    """Nearest-centroid classifiers trained on seed 0 generalise to seed 1."""
    xtr, ytr = data.synthetic_dataset(400, shape, num_classes=4, seed=0)
    xte, yte = data.synthetic_dataset(200, shape, num_classes=4, seed=1)

    def nearest_centroid_accuracy(ftr, fte):
        centroids = np.stack([ftr[ytr == k].mean(0) for k in range(4)])
        pred = np.argmin(((fte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        return (pred == yte).mean()

    # Structure (stripe orientation / frequency): phase-invariant Fourier magnitudes of luminance.
    def spectrum(x):
        gray = x.astype(np.float64).mean(-1)
        mag = np.abs(np.fft.fft2(gray - gray.mean(axis=(1, 2), keepdims=True)))
        return np.log1p(mag).reshape(len(x), -1)

    assert nearest_centroid_accuracy(spectrum(xtr), spectrum(xte)) > 0.9
    if shape[-1] == 3:  # colour alone also separates classes
        colour = lambda x: x.reshape(len(x), -1, 3).mean(1)  # noqa: E731
        assert nearest_centroid_accuracy(colour(xtr), colour(xte)) > 0.9


# ----------------------------------------------------------------------------- pipelines


def _small_pipeline(seed=0, n=40, batch=8, **kwargs):
    x, _ = data.synthetic_dataset(n, (20, 20, 3), num_classes=4, seed=0)
    aug = augment.TwoViewAugment.from_preset("cifar", (16, 16), 3, (0.5,) * 3, (0.25,) * 3)
    return data.make_pretrain_dataset(x, batch, aug, seed=seed, **kwargs)


@pytest.mark.slow
def test_pretrain_dataset_spec_and_length():
    ds = _small_pipeline()
    assert ds.element_spec == tf.TensorSpec([8, 2, 16, 16, 3], tf.float32)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 40 // 8
    assert all(b.shape == (8, 2, 16, 16, 3) and np.isfinite(b).all() for b in batches)
    assert len(list(_small_pipeline(n=43).as_numpy_iterator())) == 43 // 8
    ragged = _small_pipeline(n=43, drop_remainder=False)
    assert [b.shape[0] for b in ragged.as_numpy_iterator()] == [8] * 5 + [3]
    with pytest.raises(ValueError, match="no complete batch"):
        _small_pipeline(n=5)


def test_pretrain_dataset_views_differ_and_epochs_differ():
    ds = _small_pipeline()
    epoch1 = np.concatenate(list(ds.as_numpy_iterator()))
    epoch2 = np.concatenate(list(ds.as_numpy_iterator()))
    assert not np.allclose(epoch1[:, 0], epoch1[:, 1])  # the two views differ
    assert not np.allclose(epoch1, epoch2)
    # Without shuffling, the same images come back in order with new augmentations.
    plain = _small_pipeline(shuffle=False)
    e1 = np.concatenate(list(plain.as_numpy_iterator()))
    e2 = np.concatenate(list(plain.as_numpy_iterator()))
    assert not np.allclose(e1, e2)


@pytest.mark.slow
def test_pretrain_dataset_reproducible_for_fixed_seed():
    a = [b for b in _small_pipeline(seed=5).as_numpy_iterator()]
    b = [b for b in _small_pipeline(seed=5).as_numpy_iterator()]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    c = next(iter(_small_pipeline(seed=6).as_numpy_iterator()))
    assert not np.allclose(a[0], c)


def test_pretrain_dataset_with_keras_fit_epochs():
    """A finite dataset: fit(epochs=2) consumes N // B steps per epoch."""
    import keras

    class CountSteps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

    inputs = keras.Input((2, 16, 16, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    ds = _small_pipeline().map(lambda v: (v, tf.zeros([tf.shape(v)[0], 1])))
    counter = CountSteps()
    model.fit(ds, epochs=2, verbose=0, callbacks=[counter], shuffle=False)
    assert counter.steps == 2 * (40 // 8)


def test_eval_dataset_shapes_and_labels():
    x, y = data.synthetic_dataset(21, (20, 20, 3), num_classes=4, seed=2)
    fn = functools.partial(augment.eval_preprocess, mean=(0.5,) * 3, std=(0.25,) * 3, size=16)
    ds = data.make_eval_dataset(x, y, 8, fn)
    assert ds.element_spec == (tf.TensorSpec([None, 16, 16, 3], tf.float32),
                               tf.TensorSpec([None], tf.int64))
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape[0] for b in batches] == [8, 8, 5]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    first = np.concatenate([b[0] for b in batches])[0]
    np.testing.assert_allclose(first, fn(x[0]).numpy(), atol=1e-6)
