"""Dataset sources: image folders (generated fixtures), tfds (mock_data), MNIST files, conforming,
unreadable images, and the epoch-exact pretraining pipeline."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import REPO_ROOT
from image_folders import bombs, make_folder, plant_bad_files, write_image
from mixmask_tf import augment, data


# ----------------------------------------------------------------------------- conform_image


def test_conform_channels_match_numpy():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    gray = data.conform_image(rgb, channels=1).numpy()
    expected = np.round(rgb.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140]))
    assert gray.shape == (5, 7, 1) and gray.dtype == np.uint8
    assert np.abs(gray[..., 0].astype(int) - expected).max() <= 1
    back = data.conform_image(gray, channels=3).numpy()
    np.testing.assert_array_equal(back, np.repeat(gray, 3, axis=-1))
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], -1)
    np.testing.assert_array_equal(data.conform_image(rgba).numpy(), rgb)
    with pytest.raises(ValueError, match="channels"):
        data.conform_image(rgb, channels=2)


def test_conform_resize_shorter_side_then_centre_crop():
    # A 20x40 image whose left and right quarters differ from the middle half: resizing the
    # shorter side to 10 gives 10x20, the centre crop keeps exactly the middle half.
    image = np.zeros((20, 40, 1), np.uint8)
    image[:, 10:30] = 200
    out = data.conform_image(image, size=10).numpy()
    assert out.shape == (10, 10, 1)
    assert out[:, 1:-1].min() >= 190  # the middle half (edge columns blend through antialiasing)
    same = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    np.testing.assert_array_equal(data.conform_image(same, size=8).numpy(), same)


# ----------------------------------------------------------------------------- image folders


def test_folder_labels_splits_and_streaming(tmp_path):
    root = str(tmp_path / "ds")
    colours = make_folder(root)
    train = data.open_source("folder", "train", data_dir=root, image_size=16)
    test = data.open_source("folder", "test", data_dir=root, image_size=16,
                            class_names=train.info.class_names)
    assert isinstance(train, data.FileSource) and train.labeled
    assert train.num_examples == 12 and test.num_examples == 12
    assert train.info.class_names == ("cat", "dog", "emu") and train.info.num_classes == 3
    assert train.info.image_shape == (16, 16, 3) and not train.skipped
    seen = {}
    for image, label in train.stream(shuffle=False, seed=0):
        assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
        seen.setdefault(int(label), []).append(image.numpy().reshape(-1, 3).mean(0))
    assert sorted(seen) == [0, 1, 2]
    for label, name in enumerate(train.info.class_names):  # label = the folder's colour
        np.testing.assert_allclose(np.mean(seen[label], 0), colours[name], atol=3)
    # Mean/std are measured on the folder's own images.
    all_pixels = np.concatenate([np.broadcast_to(colours[c], (4, 3)) for c in colours]) / 255
    np.testing.assert_allclose(train.info.mean, all_pixels.mean(0), atol=0.02)


def test_folder_layouts_and_errors(tmp_path):
    flat = str(tmp_path / "flat")
    make_folder(flat, splits=(None,))
    train = data.open_source("folder", "train", data_dir=flat, image_size=8)
    assert train.num_examples == 12 and train.labeled
    with pytest.raises(data.DatasetNotFoundError, match="no 'test' split"):
        data.open_source("folder", "test", data_dir=flat, image_size=8)
    unlabeled = str(tmp_path / "unlabeled")
    for i in range(3):
        write_image(os.path.join(unlabeled, f"{i}.png"), np.full((9, 9, 3), i * 50))
    source = data.open_source("folder", "train", data_dir=unlabeled, image_size=8, channels=1)
    assert not source.labeled and source.info.image_shape == (8, 8, 1)
    assert [int(y) for _, y in source.stream(False, 0)] == [-1, -1, -1]
    with pytest.raises(ValueError, match="image_size"):
        data.open_source("folder", "train", data_dir=flat)
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.open_source("folder", "train", data_dir=str(tmp_path / "none"), image_size=8)
    os.makedirs(tmp_path / "empty" / "a")
    with pytest.raises(data.DatasetNotFoundError, match="no images"):
        data.open_source("folder", "train", data_dir=str(tmp_path / "empty"), image_size=8)
    # A test class the train split does not have is an error, not a silent relabelling.
    mismatch = str(tmp_path / "mismatch")
    make_folder(mismatch, classes=("a", "b"), per_class=1, splits=("train",))
    make_folder(mismatch, classes=("a", "zebra"), per_class=1, splits=("test",))
    names = data.open_source("folder", "train", data_dir=mismatch, image_size=8).info.class_names
    with pytest.raises(ValueError, match="zebra"):
        data.open_source("folder", "test", data_dir=mismatch, image_size=8, class_names=names)




def test_folder_unreadable_images_are_reported_and_skipped(tmp_path):
    root = str(tmp_path / "ds")
    make_folder(root)
    bad = plant_bad_files(os.path.join(root, "train", "dog"))
    source = data.open_source("folder", "train", data_dir=root, image_size=8)
    assert source.num_examples == 12 and len(source.skipped) == bad
    reasons = {os.path.basename(p): why for p, why in source.skipped}
    assert reasons["empty.png"] == "empty file"
    assert "decoded" in reasons["truncated.jpg"] and "decoded" in reasons["notes.png"]
    assert "skipped 3 unreadable" in source.description
    # Without the up-front check the stream drops them while reading instead of failing.
    lazy = data.open_source("folder", "train", data_dir=root, image_size=8, verify=False)
    assert lazy.num_examples == 15 and not lazy.skipped
    assert sum(1 for _ in lazy.stream(True, 0)) == 12
    views = augment.TwoViewAugment.from_preset("cifar", (8, 8), 3, lazy.info.mean, lazy.info.std)
    batches = list(data.make_pretrain_dataset(lazy, 4, views, seed=0).as_numpy_iterator())
    assert len(batches) == 3 and all(np.isfinite(b).all() for b in batches)


def _plant_bombs(folder):
    """Every generated bomb, under image extensions (one under another format's extension: the
    decoder goes by the bytes). Returns {file name: (height, width)}."""
    names = {"png": "bomb.png", "jpeg": "bomb.jpg", "jpeg_progressive": "bomb_progressive.jpeg",
             "gif": "bomb.gif", "bmp": "bomb.bmp", "webp": "webp_bomb.png"}
    planted = {}
    for kind, (contents, size) in bombs().items():
        with open(os.path.join(folder, names[kind]), "wb") as f:
            f.write(contents)
        planted[names[kind]] = size
    return planted


def test_folder_decompression_bombs_are_skipped_and_listed_never_decoded(tmp_path):
    root = str(tmp_path / "ds")
    make_folder(root)
    planted = _plant_bombs(os.path.join(root, "train", "emu"))
    bad = plant_bad_files(os.path.join(root, "train", "emu"))
    source = data.open_source("folder", "train", data_dir=root, image_size=8)
    assert source.num_examples == 12 and len(source.skipped) == len(planted) + bad
    reasons = {os.path.basename(p): why for p, why in source.skipped}
    for name, (height, width) in planted.items():
        assert reasons[name] == (f"declares {height} x {width} = {height * width} pixels, beyond the pixel budget of "
                                 f"89478485 pixels (max_image_pixels); not decoded"), name
    assert reasons["empty.png"] == "empty file" and "decoded" in reasons["truncated.jpg"]
    # Without the up-front check, the stream drops them when reading (before decoding), as corrupt files.
    lazy = data.open_source("folder", "train", data_dir=root, image_size=8, verify=False)
    assert lazy.num_examples == 12 + len(planted) + bad and not lazy.skipped
    assert sum(1 for _ in lazy.stream(True, 0)) == 12
    assert sum(1 for _ in lazy.stream_encoded(True, 0)) == 12
    views = augment.TwoViewAugment.from_preset("cifar", (8, 8), 3, lazy.info.mean, lazy.info.std)
    batches = list(data.make_pretrain_dataset(lazy, 4, views, seed=0).as_numpy_iterator())
    assert len(batches) == 3


def test_folder_pixel_budget_is_configurable(tmp_path):
    root = str(tmp_path / "ds")
    make_folder(root)  # 24 images of 20..39 x 20..39 pixels
    sizes = {}
    for dirpath, _, names in os.walk(os.path.join(root, "train")):
        for name in names:
            image = tf.io.decode_image(tf.io.read_file(os.path.join(dirpath, name)))
            sizes[os.path.join(dirpath, name)] = image.shape[0] * image.shape[1]
    budget = sorted(sizes.values())[len(sizes) // 2]
    within = sum(pixels <= budget for pixels in sizes.values())
    assert 0 < within < len(sizes)
    source = data.open_source("folder", "train", data_dir=root, image_size=8, max_image_pixels=budget)
    assert source.num_examples == within and len(source.skipped) == len(sizes) - within
    assert all(sizes[p] > budget and f"= {sizes[p]} pixels, beyond the pixel budget of {budget} pixels" in why
               for p, why in source.skipped)
    assert source.max_pixels == budget
    lazy = data.open_source("folder", "train", data_dir=root, image_size=8, max_image_pixels=budget, verify=False)
    assert sum(1 for _ in lazy.stream(True, 0)) == within
    with pytest.raises(ValueError, match="pixel budget"):
        data.open_source("folder", "train", data_dir=root, image_size=8, max_image_pixels=-3)


FOLDER_MEMORY_SCRIPT = r"""
import json, os, resource, sys
sys.path.insert(0, os.path.join(sys.argv[3], "tests"))
from mixmask_tf import augment, data


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


report = {}
for name, root in (("clean", sys.argv[1]), ("bombs", sys.argv[2])):
    source = data.open_source("folder", "train", data_dir=root, image_size=8)  # verify: header, then decode
    lazy = data.open_source("folder", "train", data_dir=root, image_size=8, verify=False)
    views = augment.TwoViewAugment.from_preset("cifar", (8, 8), 3, lazy.info.mean, lazy.info.std)
    batches = sum(1 for _ in data.make_pretrain_dataset(lazy, 4, views, seed=0))
    evaluated = sum(1 for _ in lazy.stream(False, 0))
    report[name] = {"skipped": len(source.skipped), "batches": batches, "evaluated": evaluated, "peak_mib": peak_mib()}
print(json.dumps(report))
"""


def test_folder_bombs_keep_peak_memory_small(tmp_path):
    """Opening (verify and not), pretraining batches and evaluation over a folder of bombs: the
    process's peak memory stays at what the same folder without bombs needs (a fresh process)."""
    clean, bombed = str(tmp_path / "clean"), str(tmp_path / "bombed")
    make_folder(clean, splits=("",))
    make_folder(bombed, splits=("",))
    planted = _plant_bombs(os.path.join(bombed, "emu"))
    result = subprocess.run([sys.executable, "-c", FOLDER_MEMORY_SCRIPT, clean, bombed, REPO_ROOT],
                            capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["clean"]["skipped"] == 0 and report["bombs"]["skipped"] == len(planted)
    assert report["bombs"]["evaluated"] == report["clean"]["evaluated"] == 12
    # The smallest bomb decodes to 16000 x 16000 x 3 bytes (732 MiB).
    assert report["bombs"]["peak_mib"] - report["clean"]["peak_mib"] < 100, report


# ----------------------------------------------------------------------------- tfds


def test_tfds_mock_in_memory_and_streamed(tmp_path):
    with tfds.testing.mock_data(num_examples=24):
        source = data.open_source("cifar10", "train", data_dir=str(tmp_path))
        assert isinstance(source, data.ArraySource) and source.num_examples == 24
        assert source.info.image_shape == (32, 32, 3) and source.info.num_classes == 10
        assert source.info.mean == data.KNOWN_STATS["cifar10"][0]
        assert source.labels.min() >= 0 and source.labels.max() < 10
        small = data.open_source("cifar10", "test", data_dir=str(tmp_path), image_size=16, channels=1,
                                 limit=10)
        assert small.images.shape == (10, 16, 16, 1) and small.info.image_shape == (16, 16, 1)
        # Over the in-memory threshold: streamed from the (mocked) shards instead.
        stream = data.open_source("cifar10", "train", data_dir=str(tmp_path), in_memory_bytes=0)
        assert isinstance(stream, data.StreamSource) and stream.num_examples == 24
        assert stream.encoded  # pretraining reads the records' encoded images and crops the full image
        views = augment.TwoViewAugment.from_preset("cifar", (32, 32), 3, stream.info.mean, stream.info.std)
        ds = data.make_pretrain_dataset(stream, 8, views, seed=0, start_epoch=0, steps_per_epoch=3)
        batches = list(ds.take(4).as_numpy_iterator())  # crosses an epoch boundary
        assert [b.shape for b in batches] == [(8, 2, 32, 32, 3)] * 4
        ev = data.make_eval_dataset(stream, None, 10, lambda x: tf.cast(x, tf.float32))
        assert sum(int(y.shape[0]) for _, y in ev) == 24


def test_tiny_imagenet_val_folder_is_labelled_from_val_annotations(tmp_path):
    """Tiny-ImageNet's val/: one flat images/ folder + val_annotations.txt, read as it is unpacked."""
    root = tmp_path / "tiny-imagenet-200"
    colours = {"n01443537": (200, 0, 0), "n01629819": (0, 200, 0), "n01641577": (0, 0, 200)}
    for wnid, colour in colours.items():
        for i in range(2):
            write_image(str(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"), np.full((64, 64, 3), colour))
    lines = []
    for i, wnid in enumerate(["n01641577", "n01443537", "n01629819", "n01641577", "n01443537"]):
        write_image(str(root / "val" / "images" / f"val_{i}.JPEG"), np.full((64, 64, 3), colours[wnid]))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t62\t62\n")
    lines.append("val_9.JPEG\tn01443537\t0\t0\t1\t1\n")  # listed, missing: reported, not fatal
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    train = data.open_source("folder", "train", data_dir=str(root), image_size=64)
    assert train.info.class_names == tuple(sorted(colours))
    val = data.open_source("folder", "val", data_dir=str(root), image_size=64,
                           class_names=train.info.class_names)
    assert val.labeled and val.num_examples == 5
    assert [os.path.basename(p) for p in val.paths] == [f"val_{i}.JPEG" for i in range(5)]
    names = train.info.class_names
    assert [names[y] for y in val.labels] == ["n01641577", "n01443537", "n01629819", "n01641577", "n01443537"]
    assert [why for _, why in val.skipped] == ["listed in val_annotations.txt but missing"]
    # The images carry their class's colour: labels and files agree.
    for (x, y) in data.make_eval_dataset(val, None, 5, lambda im: im).unbatch():
        assert np.argmax(x.numpy().mean(axis=(0, 1))) == np.argmax(colours[names[int(y)]])
    # A class the train split does not have, and a malformed line: clear errors.
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(ValueError, match="n99999999"):
        data.open_source("folder", "val", data_dir=str(root), image_size=64, class_names=names)
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG n01443537\n")
    with pytest.raises(ValueError, match="val_annotations.txt:1"):
        data.open_source("folder", "val", data_dir=str(root), image_size=64, class_names=names)


def test_tfds_missing_unknown_and_download_off(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="--download"):
        data.open_source("cifar10", "train", data_dir=str(tmp_path))
    assert not os.listdir(tmp_path) or "downloads" not in os.listdir(tmp_path)  # nothing fetched
    with pytest.raises(data.DatasetNotFoundError, match="not a tfds dataset name"):
        data.open_source("no_such_dataset_xyz", "train", data_dir=str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="manual"):
        data.open_source("imagenet2012", "train", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- MNIST


def _idx(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_folder_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = {s: rng.integers(0, 256, (n, 28, 28)).astype(np.uint8) for s, n in (("train", 6), ("t10k", 4))}
    y = {s: rng.integers(0, 10, len(x[s])).astype(np.uint8) for s in x}
    for s in x:
        (tmp_path / f"{s}-images-idx3-ubyte.gz").write_bytes(_idx(x[s]))
        (tmp_path / f"{s}-labels-idx1-ubyte.gz").write_bytes(_idx(y[s]))
    source = data.open_source("mnist", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(source.images[..., 0], x["t10k"])
    np.testing.assert_array_equal(source.labels, y["t10k"])
    assert source.info.mean == (0.1307,)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x["train"], y_train=y["train"], x_test=x["t10k"], y_test=y["t10k"])
    rgb = data.open_source("mnist", "train", data_dir=str(npz), image_size=32, channels=3)
    assert rgb.images.shape == (6, 32, 32, 3) and len(rgb.info.mean) == 3
    with pytest.raises(data.DatasetNotFoundError, match="mnist.npz"):
        data.open_source("mnist", "train", data_dir=str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(data.CorruptDatasetError):
        data.open_source("mnist", "train", data_dir=str(tmp_path / "bad.npz"))


# ----------------------------------------------------------------------------- epoch-exact pipeline


@pytest.mark.parametrize("kind", ["arrays", pytest.param("files", marks=pytest.mark.slow)])
def test_pretrain_epochs_are_exact_functions_of_seed_and_epoch(tmp_path, kind):
    if kind == "arrays":
        images, labels = data.synthetic_dataset(20, (12, 12, 3), 4, seed=0)
        source = data.ArraySource(images, labels)
    else:
        make_folder(str(tmp_path / "ds"), per_class=7, splits=("train",))
        source = data.open_source("folder", "train", data_dir=str(tmp_path / "ds"), image_size=12)
    views = augment.TwoViewAugment.from_preset("cifar", (12, 12), 3, (0.5,) * 3, (0.25,) * 3)
    steps = source.num_examples // 4
    run = data.make_pretrain_dataset(source, 4, views, seed=3, start_epoch=0, steps_per_epoch=steps)
    epochs = np.stack(list(run.take(3 * steps).as_numpy_iterator())).reshape(3, steps, 4, 2, 12, 12, 3)
    resumed = data.make_pretrain_dataset(source, 4, views, seed=3, start_epoch=2, steps_per_epoch=steps)
    np.testing.assert_array_equal(np.stack(list(resumed.take(steps).as_numpy_iterator())), epochs[2])
    assert not np.allclose(epochs[0], epochs[1])  # new order and augmentation every epoch
    other = data.make_pretrain_dataset(source, 4, views, seed=4, start_epoch=2, steps_per_epoch=steps)
    assert not np.allclose(next(iter(other)).numpy(), epochs[2, 0])
    # Every example appears once per epoch: compare per-image means of view-less eval passes.
    order = data.make_pretrain_dataset(source, 1, lambda im, s: tf.cast(im, tf.float32)[None],
                                       seed=3, start_epoch=0)
    firsts = [float(b.mean()) for b in order.take(source.num_examples).as_numpy_iterator()]
    plain = [float(np.mean(x.numpy())) for x, _ in source.stream(False, 0)]
    np.testing.assert_allclose(sorted(firsts), sorted(plain), rtol=1e-6)
