r"""The PyTorch side of the import / export tests: run with a PyTorch interpreter, never imported
by TensorFlow code (it imports torch, numpy and safetensors only).

    python tests/torch_side.py make --layout=moco_resnet50,solo_resnet18 --out=DIR --seed=0 --size=64
    python tests/torch_side.py forward --arch=resnet50 --state=F.safetensors --images=X.npy --out=Y.npy

`make` writes into DIR/<layout>/, from random weights (random BatchNorm statistics too), a checkpoint in the layout
the papers' code writes, random normalised images `images.npy` [N, H, W, C] and the eval-mode
outputs `features.npy` [N, F] (and `head.npy` [N, D] with a MoCo head):

* torchvision_resnet50: `torch.save(resnet50().state_dict())` (fc a 1000-way classifier);
* moco_resnet50, moco_resnet18_cifar, mocov1_resnet18_cifar: MoCo's `.pth.tar` ({"epoch", "arch",
  "state_dict": module.encoder_q.* / module.encoder_k.* with the v2 (fc.0, fc.2) or v1 (fc) head,
  module.queue [D, K], module.queue_ptr}, "optimizer": SGD's state dict});
* solo_resnet18: solo-learn's Lightning `.ckpt` ({"epoch", "global_step", "pytorch-lightning_version",
  "state_dict": backbone.* (3x3 stem with padding 2, no max-pool, no fc), projector.*, "hyper_parameters": an
  argparse.Namespace, "optimizer_states", "lr_schedulers"});
* safetensors_resnet18: solo-learn's `backbone.*` tensors as a `.safetensors` file;
* <layout>_legacy: the same in PyTorch's format before 1.6 (`_use_new_zipfile_serialization=False`).

`forward` loads a state dict file (`.safetensors`) into torchvision's architecture with
`load_state_dict(strict=True)` (the stock 1000-way fc when the file has one, else fc = Identity;
with --head the MoCo head as fc) and writes its eval-mode outputs (without a head: the features,
fc = Identity). The ResNets below are a compact re-implementation of torchvision's
(BSD-3-Clause) with its module names; torchvision itself is not needed.
"""

import argparse
import os
from collections import OrderedDict

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: the stride in the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet (module names included); `cifar_stem`: the CIFAR change (conv1 3x3
    stride 1 with padding `stem_padding`: 2 in solo-learn, 1 in MoCo's CIFAR demo; maxpool Identity)."""

    def __init__(self, block, layers, num_classes=1000, cifar_stem=False, stem_padding=1):
        super().__init__()
        self.inplanes = 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, 64, 3, 1, stem_padding, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(**kwargs):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet18(**kwargs):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


ARCHS = {"resnet50": lambda padding=3: resnet50(),
         "resnet18_cifar": lambda padding=1: resnet18(cifar_stem=True, stem_padding=padding)}


def moco_head(model, version, dim=128, hidden=None):
    """MoCo's head: `fc` = Linear(F, dim) (v1), or Sequential(Linear(F, F), ReLU, Linear(F, dim)) (v2)."""
    features = model.fc.in_features
    if version == "v1":
        model.fc = nn.Linear(features, dim)
    else:
        model.fc = nn.Sequential(nn.Linear(features, hidden or features), nn.ReLU(), nn.Linear(hidden or features, dim))
    return model


def randomize(model, generator):
    """Random weights and BatchNorm statistics (so that a wrong mapping shows)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(1234)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()


def prefixed(state, prefix):
    return OrderedDict((prefix + k, v) for k, v in state.items())


def features_of(model, images):
    """Eval-mode outputs (features without the fc, and the fc output) of NHWC numpy images."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    fc, model.fc = model.fc, nn.Identity()
    with torch.no_grad():
        features = model(x)
        head = fc(features)
    model.fc = fc
    return features.numpy(), head.numpy()


def make(layout, out, seed, size, batch):
    legacy = layout.endswith("_legacy")  # PyTorch's format before 1.6 (MoCo's 2020 releases)
    layout = layout[:-len("_legacy")] if legacy else layout
    save = (lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False)) if legacy else torch.save
    g = torch.Generator().manual_seed(seed)
    arch = "resnet50" if layout.endswith("resnet50") else "resnet18_cifar"
    padding = 2 if layout.startswith(("solo", "safetensors")) else 1  # solo-learn's CIFAR stem pads 2
    model = randomize(ARCHS[arch](padding), g)
    version = "v1" if layout.startswith("mocov1") else "v2"
    if layout.startswith("moco"):
        model = randomize(moco_head(model, version, dim=16 if arch == "resnet18_cifar" else 128), g)
    if layout.startswith(("solo", "safetensors")):
        model.fc = nn.Identity()
    images = np.random.default_rng(seed).standard_normal((batch, size, size, 3)).astype(np.float32)
    features, head = features_of(model, images)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "images.npy"), images)
    np.save(os.path.join(out, "features.npy"), features)
    if layout.startswith("moco"):
        np.save(os.path.join(out, "head.npy"), head)
    if layout == "torchvision_resnet50":
        path = os.path.join(out, "resnet50.pth")
        save(model.state_dict(), path)
    elif layout.startswith("moco"):
        key = randomize(moco_head(ARCHS[arch](), version, dim=16 if arch == "resnet18_cifar" else 128), g)
        np.save(os.path.join(out, "key_features.npy"), features_of(key, images)[0])
        dim = 16 if arch == "resnet18_cifar" else 128
        state = OrderedDict(**prefixed(model.state_dict(), "module.encoder_q."), **prefixed(key.state_dict(), "module.encoder_k."))
        state["module.queue"] = nn.functional.normalize(torch.randn(dim, 32, generator=g), dim=0)
        state["module.queue_ptr"] = torch.tensor([5])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
        path = os.path.join(out, "checkpoint_0199.pth.tar")
        save({"epoch": 200, "arch": arch, "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    elif layout == "solo_resnet18":
        projector = nn.Sequential(nn.Linear(512, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
        state = OrderedDict(**prefixed(model.state_dict(), "backbone."), **prefixed(projector.state_dict(), "projector."))
        hparams = argparse.Namespace(method="simclr", backbone={"name": "resnet18"}, data={"dataset": "cifar10"})
        path = os.path.join(out, "simclr-cifar10-epoch=999.ckpt")
        save({"epoch": 999, "global_step": 195000, "pytorch-lightning_version": "2.1.0", "state_dict": state,
                    "hyper_parameters": hparams, "optimizer_states": [], "lr_schedulers": []}, path)
    elif layout == "safetensors_resnet18":
        from safetensors.torch import save_file

        path = os.path.join(out, "solo_backbone.safetensors")
        save_file({k: v.contiguous() for k, v in prefixed(model.state_dict(), "backbone.").items()}, path)
    else:
        raise SystemExit(f"unknown layout {layout}")
    print(path)


def forward(arch, state_path, images_path, out, head, stem_padding):
    """Loads a .safetensors state dict into torchvision's architecture (strict) and runs it."""
    from safetensors.torch import load_file

    model = ARCHS[arch](stem_padding)
    state = load_file(state_path)
    if head:
        model = moco_head(model, head, dim=int(state["fc.2.weight" if head == "v2" else "fc.weight"].shape[0]))
    elif "fc.weight" not in state:
        model.fc = nn.Identity()
    model.load_state_dict(state, strict=True)  # the stock model (fc 1000-way) when the file has fc
    if not head:
        model.fc = nn.Identity()  # the features
    model.eval()
    x = torch.from_numpy(np.load(images_path).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        np.save(out, model(x).numpy())


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("--layout", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--size", type=int, default=64, help="image side for ResNet-50 (the CIFAR ResNet-18: 32)")
    m.add_argument("--batch", type=int, default=2)
    f = sub.add_parser("forward")
    f.add_argument("--arch", required=True, choices=sorted(ARCHS))
    f.add_argument("--state", required=True)
    f.add_argument("--images", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--head", default="", choices=["", "v1", "v2"])
    f.add_argument("--stem_padding", type=int, default=1, help="the CIFAR ResNet-18's conv1 padding")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.command == "make":  # --layout=a,b: one folder per layout under --out
        for layout in args.layout.split(","):
            make(layout, os.path.join(args.out, layout), args.seed, args.size if "resnet50" in layout else 32,
                 args.batch)
    else:
        forward(args.arch, args.state, args.images, args.out, args.head, args.stem_padding)


if __name__ == "__main__":
    main()
