"""Data flags: the dataset flags every command-line entry point shares, and opening their sources.

Imported by `pretrain`, `knn_eval`, `linear_eval` and `finetune`, so that every command reads data
the same way.
"""

import os

from absl import flags

from . import UserError

FLAGS = flags.FLAGS

flags.DEFINE_string("dataset", "fashion_mnist",
                    "Dataset: fashion_mnist (Debian package), mnist (local IDX files or mnist.npz in --data_dir), "
                    "synthetic (generated), folder (an image folder at --data_dir: root/[train|test]/<class>/*.jpg), "
                    "or any tfds name (cifar10, cifar100, imagenet2012, ...) read from --data_dir.")
flags.DEFINE_string("data_dir", None, "Dataset folder (default: the dataset's standard location).")
flags.DEFINE_boolean("download", False, "tfds datasets: download and prepare if missing (off: nothing is downloaded).")
flags.DEFINE_string("manual_dir", None, "tfds datasets: folder of manually downloaded files (ImageNet's tar files).")
flags.DEFINE_string("train_split", "train", "Split to pretrain on (also the kNN bank).")
flags.DEFINE_string("test_split", "test", "Split the kNN monitor classifies (ImageNet: validation).")
flags.DEFINE_integer("image_size", 0, "Image size S. In-memory datasets: resize (shorter side) and centre-crop every "
                     "image to S once when read. Image folders and streamed tfds splits (ImageNet): pretraining crops "
                     "are drawn on the full images and resized to S (a JPEG decodes only the crop window); evaluation "
                     "resizes the shorter side to S / --eval_crop_ratio and cuts the centre S x S. 0: keep the "
                     "dataset's size (required for image folders).")
flags.DEFINE_float("eval_crop_ratio", 0.875, "Image folders and streamed tfds splits: evaluation (and serving) resize the "
                   "shorter side to --image_size / ratio and cut the centre square; 0.875 is torchvision's Resize(256) + "
                   "CenterCrop(224) at 224 px, 1 keeps the whole shorter side. In (0, 1].")
flags.DEFINE_integer("channels", 0, "Convert images to 1 or 3 channels (0: keep the dataset's).")
flags.DEFINE_boolean("verify_images", True, "Image folders: decode every file once at start and skip unreadable ones.")
flags.DEFINE_integer("max_image_pixels", 89_478_485,  # = mixmask_tf.data.image_header.DEFAULT_MAX_IMAGE_PIXELS
                     "Pixel budget (decompression-bomb guard): an image file whose header declares more pixels is never "
                     "decoded. Image folders skip and list it (skipped_images.txt); pretraining's export records it as "
                     "the serve_bytes signature's budget. Default: Pillow's MAX_IMAGE_PIXELS.")
flags.DEFINE_integer("train_limit", None, "Use only the first N training images (smoke runs).")
flags.DEFINE_integer("test_limit", None, "Use only the first N test images for kNN.")


def parse_crop_scale(values):
    """A --crop_scale list flag ['a', 'b'] as (a, b); raises UserError unless 0 < a <= b <= 1."""
    try:
        scale = tuple(float(v) for v in values)
    except ValueError as e:
        raise UserError(f"--crop_scale: {e}") from e
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise UserError(f"--crop_scale takes 'a,b' with 0 < a <= b <= 1, got {','.join(values)}")
    return scale


def validate_data_flags():
    """Checks the dataset flags; raises UserError."""
    f = FLAGS
    if f.image_size < 0:
        raise UserError(f"--image_size must be positive (or 0 to keep the dataset's size), got {f.image_size}")
    if not 0.0 < f.eval_crop_ratio <= 1.0:
        raise UserError(f"--eval_crop_ratio must lie in (0, 1], got {f.eval_crop_ratio}")
    if f.max_image_pixels < 1:
        raise UserError(f"--max_image_pixels must be a positive number of pixels, got {f.max_image_pixels}")
    if f.channels not in (0, 1, 3):
        raise UserError(f"--channels must be 1 or 3 (or 0 to keep the dataset's), got {f.channels}")
    if f.dataset == "folder" and not f.data_dir:
        raise UserError("--dataset=folder needs --data_dir=<root> (root/<class>/*.jpg or root/train/<class>/*.jpg)")
    if f.dataset == "folder" and not f.image_size:
        raise UserError("--dataset=folder needs --image_size (folder images come in any size), e.g. --image_size=64")


def open_sources():
    """(train source, test source or None, why kNN is off or None) for the dataset flags."""
    from mixmask_tf import data

    common = dict(data_dir=FLAGS.data_dir, image_size=FLAGS.image_size or None, channels=FLAGS.channels or None,
                  download=FLAGS.download, manual_dir=FLAGS.manual_dir, verify=FLAGS.verify_images,
                  crop_ratio=FLAGS.eval_crop_ratio, max_image_pixels=FLAGS.max_image_pixels)
    train = data.open_source(FLAGS.dataset, FLAGS.train_split, limit=FLAGS.train_limit, **common)
    if not train.labeled:
        return train, None, f"the {FLAGS.train_split!r} split has no labels"
    extra = {"class_names": train.info.class_names} if FLAGS.dataset == "folder" else {}
    try:
        test = data.open_source(FLAGS.dataset, FLAGS.test_split, limit=FLAGS.test_limit, **common, **extra)
    except data.DatasetNotFoundError as e:
        if FLAGS.dataset != "folder":
            raise
        return train, None, str(e)
    if not test.labeled:
        return train, None, f"the {FLAGS.test_split!r} split has no labels"
    return train, test, None


def report_skipped(model_dir, sources):
    """Prints the count of unreadable images left out and lists them in skipped_images.txt."""
    from mixmask_tf import checkpoint

    skipped = [item for source in sources if source is not None for item in source.skipped]
    if not skipped:
        return
    path = os.path.join(model_dir, "skipped_images.txt")
    checkpoint.atomic_write_text(path, "".join(f"{p}\t{why}\n" for p, why in skipped))
    print(f"skipped {len(skipped)} unreadable image(s) (corrupt, or beyond --max_image_pixels), listed in {path}",
          flush=True)


