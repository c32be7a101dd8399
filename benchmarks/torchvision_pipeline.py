r"""torchvision + PIL two-view pipelines on a folder of JPEGs: the comparison rows of
``benchmarks.input_pipeline --folder`` (run by it in a subprocess with the interpreter of a venv
that has torchvision, ``--torch_python``; this file imports neither TensorFlow nor this project).

    <torchvision venv>/bin/python -m benchmarks.torchvision_pipeline --folder=/tmp/photos \
        --recipe=mocov2 --batch_size=64 --batches=8 --warmup=2

Its venv (a benchmark's only, never the TensorFlow environment or CI; the figures in
docs/performance.md used torch 2.14.1, torchvision 0.29.1, Pillow 13.0):
``python3 -m venv <venv> && <venv>/bin/pip install torch==2.14.1 torchvision==0.29.1 pillow``.

Recipes (two independently augmented views of each image, ``ToTensor`` + ``Normalize`` with
ImageNet's mean and std):

* ``mocov2``: MoCo v2's ``main_moco.py --aug-plus`` transform: RandomResizedCrop(size,
  scale=(0.2, 1)), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(0.2),
  RandomApply([GaussianBlur(sigma U(0.1, 2))], p=0.5) (MoCo's own blur: PIL's
  ``ImageFilter.GaussianBlur``), RandomHorizontalFlip;
* ``crop_flip``: RandomResizedCrop(size) + RandomHorizontalFlip only.

Images are read with PIL (``Image.open(path).convert("RGB")``, as torchvision's ``ImageFolder``
does) in a ``DataLoader`` with ``--workers`` worker processes (default: every core this process
may use), batches of ``--batch_size`` images, shuffled. It prints one JSON line:
``{"recipe", "images_per_second", "workers", "batch_size", "batches", "versions"}``; images/s
counts images (two views each) over ``--batches`` batches after ``--warmup`` untimed ones (the
workers' start-up is in the warm-up).
"""

import argparse
import glob
import json
import os
import random
import sys
import time

import PIL
import torch
import torchvision
from PIL import Image, ImageFilter
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class GaussianBlur:
    """MoCo v2's blur (moco/loader.py): PIL's GaussianBlur with a radius drawn from U(sigma)."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, image):
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def recipe(name, size):
    """The torchvision transform of one view."""
    normalize = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    if name == "crop_flip":
        return transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()] + normalize)
    if name == "mocov2":
        return transforms.Compose([
            transforms.RandomResizedCrop(size, scale=(0.2, 1.0)),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
            transforms.RandomApply([GaussianBlur((0.1, 2.0))], p=0.5),
            transforms.RandomHorizontalFlip(),
        ] + normalize)
    raise ValueError(f"unknown recipe {name!r}; known: mocov2, crop_flip")


class TwoViews(torch.utils.data.Dataset):
    """The images of a list of files, two views each: float32 [2, 3, size, size]."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with open(self.paths[i], "rb") as f:
            image = Image.open(f).convert("RGB")
        return torch.stack([self.transform(image), self.transform(image)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", required=True, help="image folder: every *.jp*g file below it")
    parser.add_argument("--recipe", default="mocov2", choices=["mocov2", "crop_flip"])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.folder, "**", "*.jp*g"), recursive=True))
    if not paths:
        print(f"error: no JPEG files below {args.folder}", file=sys.stderr)
        return 2
    loader = torch.utils.data.DataLoader(TwoViews(paths, recipe(args.recipe, args.image_size)),
                                         batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         drop_last=True, persistent_workers=args.workers > 0)

    def batches():
        while True:
            yield from loader

    iterator = batches()
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        views = next(iterator)
    rate = args.batches * args.batch_size / (time.perf_counter() - start)
    assert tuple(views.shape) == (args.batch_size, 2, 3, args.image_size, args.image_size), views.shape
    print(json.dumps({"recipe": args.recipe, "images_per_second": rate, "workers": args.workers,
                      "batch_size": args.batch_size, "batches": args.batches,
                      "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                                   "pillow": PIL.__version__}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
