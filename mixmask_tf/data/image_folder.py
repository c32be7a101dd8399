"""Image-folder datasets: ``root/<class>/**/*.jpg|png``, streamed from disk.

Layouts (the first that matches wins):

* ``root/train/<class>/...`` and ``root/test/<class>/...`` (or ``val/``, ``validation/``): one
  sub-folder per split, each holding one folder per class;
* ``root/<class>/...``: the whole folder is the train split (there is no test split);
* image files directly in a split folder, with no class folders: an unlabeled split (labels -1);
* a split folder with a ``val_annotations.txt`` (Tiny-ImageNet's ``val/``: ``images/*.JPEG``
  and one ``<file>\t<class>[\t...]`` line per image): labelled from that file, nothing
  rearranged by hand.

Class folders are searched recursively (Tiny-ImageNet's ``train/<wnid>/images/*.JPEG`` works).
Labels are the sorted class-folder names of the train split; a test split is labelled with the
train split's classes. Files are decoded on the fly (:class:`mixmask_tf.FileSource`), so
the folder never has to fit in memory. With ``verify=True`` every file is decoded once when the
split is opened (in parallel, in tf.data); files that fail (corrupt, truncated, not an image,
unreadable) are left out and listed in ``Source.skipped`` instead of stopping a run.

The pixel budget (``max_pixels``, default :data:`mixmask_tf.data.image_header.DEFAULT_MAX_IMAGE_PIXELS`,
Pillow's decompression-bomb limit): a file whose header declares more pixels is never decoded.
With ``verify=True`` it is left out and listed in ``skipped`` ("declares H x W = N pixels,
beyond the pixel budget of B pixels"); without, it is dropped when read, as a corrupt file is.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from mixmask_tf.data import image_header
from mixmask_tf.data.info import DatasetInfo, DatasetNotFoundError
from mixmask_tf.data.sources import FileSource, estimate_mean_std

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = {
    "train": ("train",),
    "test": ("test", "val", "validation"),
    "validation": ("validation", "val", "test"),
    "val": ("val", "validation", "test"),
}


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def split_folder(root: str, split: str) -> str:
    """The folder of ``split`` under ``root`` (see the module docstring for the layouts).

    Raises:
      DatasetNotFoundError: root missing, or no folder for the split.
    """
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"image folder {root!r} does not exist")
    names = SPLIT_FOLDERS.get(split, (split,))
    for name in names:
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    has_split_folders = any(os.path.isdir(os.path.join(root, n))
                            for names_ in SPLIT_FOLDERS.values() for n in names_)
    if split == "train" and not has_split_folders:
        return root
    raise DatasetNotFoundError(
        f"image folder {root!r} has no {split!r} split: expected a sub-folder named "
        f"{' or '.join(names)} (root/<split>/<class>/*.jpg)")


ANNOTATIONS_FILE = "val_annotations.txt"


def read_annotations(folder: str, class_names: Optional[Sequence[str]] = None
                     ) -> Optional[Tuple[List[str], np.ndarray, Tuple[str, ...], List[Tuple[str, str]]]]:
    """Labels of a split folder from its ``val_annotations.txt`` (Tiny-ImageNet's val/ layout).

    Each non-empty line is ``<file name>\t<class>`` (further tab-separated fields, Tiny-ImageNet's
    bounding box, are ignored); the files lie in ``folder/images/`` (or in ``folder`` itself).

    Args:
      folder: the split folder.
      class_names: the classes to label with (the train split's); None: the sorted classes
        named in the file.

    Returns:
      None when the folder has no annotations file; else (paths sorted by file name, labels
      int64 [N], class names, [(path, reason)] of listed files that do not exist).

    Raises:
      ValueError: a malformed line, a class that is not in ``class_names``, or a file listed
        twice.
    """
    path = os.path.join(folder, ANNOTATIONS_FILE)
    if not os.path.isfile(path):
        return None
    images = os.path.join(folder, "images")
    image_dir = images if os.path.isdir(images) else folder
    entries = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 2 or not fields[0] or not fields[1]:
                raise ValueError(f"{path}:{number}: expected '<file>\\t<class>', got {line.strip()!r}")
            name, label = os.path.basename(fields[0]), fields[1].strip()
            if name in entries:
                raise ValueError(f"{path}:{number}: {name} is listed twice")
            entries[name] = label
    if not entries:
        raise DatasetNotFoundError(f"{path} lists no images")
    names = tuple(sorted(set(entries.values()))) if class_names is None else tuple(class_names)
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(entries.values()) - set(index))
    if unknown:
        raise ValueError(f"{path}: classes {unknown[:5]} are not classes of the train split "
                         f"({len(names)} classes)")
    paths, labels, missing = [], [], []
    for name in sorted(entries):
        file = os.path.join(image_dir, name)
        if os.path.isfile(file):
            paths.append(file)
            labels.append(index[entries[name]])
        else:
            missing.append((file, f"listed in {ANNOTATIONS_FILE} but missing"))
    return paths, np.asarray(labels, np.int64), names, missing


def scan(folder: str, class_names: Optional[Sequence[str]] = None
         ) -> Tuple[List[str], np.ndarray, Tuple[str, ...], bool]:
    """Lists the images of one split folder.

    Args:
      folder: the split folder.
      class_names: classes to label with (the train split's); None: this folder's own.

    Returns:
      (paths sorted, labels int64 [N] (-1 if unlabeled), class names, labeled).

    Raises:
      DatasetNotFoundError: no image files at all.
      ValueError: a class folder that is not in ``class_names``.
    """
    entries = sorted(os.listdir(folder))
    loose = [os.path.join(folder, e) for e in entries
             if _is_image(e) and os.path.isfile(os.path.join(folder, e))]
    class_files = {}
    for entry in entries:
        sub = os.path.join(folder, entry)
        if not os.path.isdir(sub) or entry.startswith("."):
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(sub, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
        if files:
            class_files[entry] = files
    if not class_files:
        if not loose:
            raise DatasetNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r}: expected "
                f"{folder}/<class>/*.jpg (labelled) or {folder}/*.jpg (unlabeled)")
        return loose, np.full([len(loose)], -1, np.int64), (), False
    if loose:
        logging.warning("%s: %d image files outside class folders are ignored", folder, len(loose))
    names = tuple(sorted(class_files)) if class_names is None else tuple(class_names)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(class_files) - set(index))
    if unknown:
        raise ValueError(f"{folder}: class folders {unknown[:5]} are not classes of the train "
                         f"split ({len(names)} classes)")
    paths, labels = [], []
    for name in sorted(class_files):
        paths.extend(class_files[name])
        labels.extend([index[name]] * len(class_files[name]))
    return paths, np.asarray(labels, np.int64), names, True


def find_unreadable(paths: Sequence[str], channels: int = 3,
                    max_pixels: int = image_header.DEFAULT_MAX_IMAGE_PIXELS) -> List[Tuple[str, str]]:
    """Checks every file once (parallel tf.data) and returns the ones that fail.

    Each file's header is read first (:func:`mixmask_tf.data.image_header.declared_size`); a
    file declaring more than ``max_pixels`` pixels is listed without being decoded, the others
    are decoded once.

    Args:
      paths: file paths.
      channels: channels to decode to.
      max_pixels: the pixel budget.

    Returns:
      [(path, reason)] of the files that cannot be read or decoded, decode to an empty image,
      or declare more pixels than the budget, in path order.
    """
    max_pixels = image_header.check_max_pixels(max_pixels)
    if not paths:
        return []

    def check(i, path):
        contents = tf.io.read_file(path)
        size = image_header.declared_size(contents)

        def decode():
            image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
            shape = tf.shape(image)
            check = tf.debugging.assert_positive(shape[0] * shape[1], message="empty image")
            with tf.control_dependencies([check]):
                return tf.constant(True)

        within = tf.cond(size[2] <= max_pixels, decode, lambda: tf.constant(False))
        return i, size, within

    ds = tf.data.Dataset.from_tensor_slices(list(paths)).enumerate()
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).ignore_errors()
    good = np.zeros(len(paths), bool)
    beyond = {}
    for index, size, within in ds.batch(4096).as_numpy_iterator():
        good[index[within]] = True
        for i, (h, w, pixels) in zip(index[~within], size[~within]):
            beyond[int(i)] = (f"declares {h} x {w} = {pixels} pixels, beyond the pixel budget of {max_pixels} "
                              f"pixels (max_image_pixels); not decoded")
    bad = []
    for i in np.flatnonzero(~good):
        path = paths[i]
        reason = "cannot be decoded (corrupt, truncated or not an image)"
        if int(i) in beyond:
            reason = beyond[int(i)]
        elif not os.access(path, os.R_OK):
            reason = "unreadable"
        elif os.path.getsize(path) == 0:
            reason = "empty file"
        bad.append((path, reason))
    return bad


def open_folder(root: str, split: str = "train", image_size: Optional[int] = None,
                channels: int = 3, limit: Optional[int] = None, verify: bool = True,
                class_names: Optional[Sequence[str]] = None, crop_ratio: float = 0.875,
                max_pixels: int = image_header.DEFAULT_MAX_IMAGE_PIXELS) -> FileSource:
    """Opens one split of an image folder as a streamed source.

    Args:
      root: the dataset folder.
      split: "train", "test" (also found as val/ or validation/), or another split folder.
      image_size: square size S: pretraining crops are resized to S x S (drawn on the full
        images), evaluation resizes the shorter side to S / crop_ratio and cuts the centre
        S x S; required, because folder images come in any size.
      channels: 1 or 3.
      limit: keep the first ``limit`` files (in sorted order).
      verify: decode every file now and leave out the unreadable ones (listed in
        ``skipped`` and logged); otherwise unreadable files are dropped while training.
      class_names: the train split's classes, to label a test split consistently.
      crop_ratio: the evaluation centre crop's share of the resized shorter side, (0, 1]
        (0.875, torchvision's Resize(256) + CenterCrop(224) at 224 px; 1 keeps the whole side).
      max_pixels: the pixel budget: a file whose header declares more pixels is never decoded
        (left out and listed in ``skipped`` with ``verify``; dropped when read otherwise).

    Returns:
      FileSource with ``info.image_shape == (S, S, channels)``; mean/std measured on up
      to 256 of its images.

    Raises:
      ValueError: no image_size, bad channels.
      DatasetNotFoundError: no such folder / split / images, or every image unreadable.
    """
    if not image_size:
        raise ValueError("image folders hold images of any size: pass image_size "
                         "(--image_size=64, say) to resize them to a square")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    max_pixels = image_header.check_max_pixels(max_pixels)
    folder = split_folder(os.fspath(root), split)
    annotated = read_annotations(folder, class_names)
    skipped = []
    if annotated is not None:
        paths, labels, names, skipped = annotated
        labeled = True
        if skipped:
            logging.warning("%s: %d image(s) listed in %s are missing, e.g. %s", folder, len(skipped),
                            ANNOTATIONS_FILE, skipped[0][0])
    else:
        paths, labels, names, labeled = scan(folder, class_names)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    if verify:
        unreadable = find_unreadable(paths, channels, max_pixels)
        if unreadable:
            bad = {p for p, _ in unreadable}
            keep = [i for i, p in enumerate(paths) if p not in bad]
            paths, labels = [paths[i] for i in keep], labels[keep]
            logging.warning("%s: skipped %d unreadable image(s), e.g. %s (%s)", folder,
                            len(unreadable), unreadable[0][0], unreadable[0][1])
            skipped = list(skipped) + unreadable
    if not paths:
        raise DatasetNotFoundError(f"{folder}: none of the images could be read "
                                        f"({len(skipped)} skipped)")
    shape = (int(image_size), int(image_size), int(channels))
    provisional = DatasetInfo("folder", shape, len(names), (0.5,) * channels,
                                   (0.25,) * channels, names)
    source = FileSource(paths, labels, provisional, labeled, "", skipped, crop_ratio, max_pixels)
    sample = np.stack([x.numpy() for x, _ in source.stream(True, 0).take(256)])
    mean, std = estimate_mean_std(sample)
    source.info = DatasetInfo("folder", shape, len(names), mean, std, names)
    kind = f"{len(names)} classes" if labeled else "unlabeled"
    source.description = (f"folder {folder} ({split}): {len(paths)} images, {kind}, "
                          f"{shape[0]}x{shape[1]}x{shape[2]} crops of the full images (evaluation: centre "
                          f"crop ratio {source.crop_ratio:g}), streamed"
                          + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return source
