r"""PyTorch 2 reference of mixmask-tf's MoCo v2 + MixMask train step, to time side by side.

An independent, idiomatic PyTorch implementation of the step that `benchmarks/step_throughput.py`
times for `--frameworks=mocov2` (mixmask-tf's `MoCo` trainer with the `mixmask` branch), so the TF
step can be compared against a fast PyTorch bar (eager and `torch.compile`). It imports torch and
numpy only (never TensorFlow) and runs in its own environment.

One step (the same as `mixmask_tf.models.trainer.SiameseTrainer.train_step` + `models.moco.MoCo`):

1. EMA of the key encoder's parameters (BN moving statistics are its own), k <- m k + (1 - m) q,
   m = 0.99, before the keys are encoded (`torch._foreach_*`, as the MoCo reference under no_grad).
2. q1 = normalize(query(x1)), k2 = normalize(key(x2)) (key: no grad, BN in train mode).
3. clean loss: InfoNCE of q1 against k2 (positive) and the queue (negatives), T = 0.2.
4. MixMask branch (`--branches mixmask`): one blocked G x G grid mask per batch (BEiT block-wise
   generator, ratio 0.5, minimum block 4 cells), drawn *on the device inside the step*, upsampled
   by nearest neighbour; mixed = M x1 + (1 - M) x1[perm] with perm = reverse; lambda = measured
   mask fraction; q_mix = normalize(query(mixed)) (a separate forward: its own BN batch statistics,
   as in TF); loss_mix = mean(lambda L(q_mix, k2)); loss_switch = mean((1 - lambda) L(q_mix[inv
   perm], k2)) (the switch term, free: no second forward).
5. loss = clean + mix + switch; backward; SGD (lr 0.06, momentum 0.9, weight decay 5e-4 coupled,
   `torch.optim.SGD`); enqueue k2 at the (tensor) queue pointer, wrapping around.

Encoders: small_convnet (4 conv3x3-BN-ReLU blocks, width w, 2w, 4w, 4w, stride 1, 2, 2, 1; global
average pool) on 28x28x1 and the CIFAR ResNet-18 (3x3 stem, no max-pool) on 32x32x3, each with
the MoCo v2 head Linear(F, F)-ReLU-Linear(F, 128); BN eps 1e-5, momentum 0.1 (= Keras 0.9).

Install (optional; only for this comparison, not part of setup.sh or CI):

    python -m venv /work/torchvenv
    /work/torchvenv/bin/pip install -r benchmarks/requirements-torch.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu        # CPU wheel torch==2.13.0+cpu
    (a CUDA machine uses its own CUDA build of torch 2.x instead)

Commands (from the repository root; `python benchmarks/torch_reference.py ...` works too):

    # timing (median seconds of --steps calls after --warmup; compile happens in the warm-up)
    /work/torchvenv/bin/python -m benchmarks.torch_reference \
        --backbones small_convnet --branches none,mixmask --modes eager,compile \
        --channels_last false,true --json /tmp/torch_reference.json
    /work/torchvenv/bin/python -m benchmarks.torch_reference --backbones resnet18_cifar --steps 5
    # GPU, bf16 autocast, another inductor mode
    python -m benchmarks.torch_reference --device cuda --amp bf16 --compile_mode max-autotune-no-cudagraphs

    # the same step as mixmask-tf: replay one TF step and compare losses and updated weights
    .venv/bin/python -m benchmarks.dump_reference_step --out /tmp/ref_step.npz       # TF venv
    /work/torchvenv/bin/python -m benchmarks.torch_reference --verify /tmp/ref_step.npz

Timing protocol (as step_throughput.py): a fixed batch on the device, `--warmup` untimed calls,
then the median of `--steps` individually timed calls (`torch.cuda.synchronize()` after each on
cuda). The TF benchmark to compare with:
`python -m benchmarks.step_throughput --frameworks=mocov2 --branches=none,mixmask --jit=false,true`.

Differences from the TF step that are deliberate, for speed, and do not change its cost:
* Benchmark mode uses torch's own conv padding (3x3 stride-2 "same" = symmetric padding 1; TF
  pads 0 before / 1 after on even sizes) and `nn.BatchNorm2d` (unbiased running variance; Keras
  keeps the biased one). `--verify` switches both to the Keras conventions (`Conv2dSame`,
  `KerasBatchNorm2d`) so the numbers match; `--tf_padding true` times the Keras padding too.
* The TF benchmark uses plain SGD (lr 0.03, no weight decay); this one the MoCo v2 setting
  (lr 0.06, coupled weight decay 5e-4): one extra elementwise op per parameter.
* On cuda, TF32 is on by default (`--tf32`), as TensorFlow's default; `--verify` turns it off.
"""

import argparse
import contextlib
import copy
import itertools
import json
import math
import os
import platform
import re
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SMALL_SHAPE = (28, 28, 1)
RESNET_SHAPE = (32, 32, 3)
TERMS = ("loss", "loss_clean", "loss_mix", "loss_switch", "lambda")

# BEiT block-wise generator constants (mixmask_tf.ops.masks).
BEIT_MIN_ASPECT = 0.3
BEIT_MAX_ATTEMPTS = 10


# ----------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (pad after when the total padding is odd).

    For a 3x3 stride-2 conv on an even size TF pads 0 before and 1 after; torch's padding=1
    pads both sides, which samples other pixels. Used by `--verify` (and `--tf_padding true`).
    """

    def forward(self, x):
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class KerasBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose running variance follows Keras (biased batch variance).

    Training-mode output is identical to nn.BatchNorm2d (both normalise with the biased batch
    variance); only the running-variance update differs (torch: unbiased, n / (n - 1)). Used by
    `--verify` so the BN moving statistics can be compared with Keras' exactly.
    """

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        with torch.no_grad():
            self.running_mean.mul_(1.0 - self.momentum).add_(mean.detach(), alpha=self.momentum)
            self.running_var.mul_(1.0 - self.momentum).add_(var.detach(), alpha=self.momentum)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def _conv(cin, cout, kernel, stride, tf_padding):
    if kernel == 1:  # Keras "valid" 1x1: the same in both frameworks
        return nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
    if tf_padding and stride > 1:
        return Conv2dSame(cin, cout, kernel, stride, 0, bias=False)
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


def _bn(channels, keras_bn):
    # Keras momentum 0.9 (moving = 0.9 moving + 0.1 batch) is torch momentum 0.1.
    return (KerasBatchNorm2d if keras_bn else nn.BatchNorm2d)(channels, eps=1e-5, momentum=0.1)


class SmallConvNet(nn.Module):
    """mixmask_tf.backbones.small_convnet: conv3x3-BN-ReLU x 4 (w, 2w, 4w, 4w; strides 1, 2, 2, 1), GAP."""

    def __init__(self, in_channels, width=32, tf_padding=False, keras_bn=False):
        super().__init__()
        cin = in_channels
        for i, (filters, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2), (4 * width, 1)]):
            setattr(self, f"conv{i}", _conv(cin, filters, 3, stride, tf_padding))
            setattr(self, f"bn{i}", _bn(filters, keras_bn))
            cin = filters
        self.num_features = cin

    def forward(self, x):
        for i in range(4):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)), inplace=True)
        return x.mean(dim=(2, 3))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, tf_padding=False, keras_bn=False):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, tf_padding)
        self.bn1 = _bn(cout, keras_bn)
        self.conv2 = _conv(cout, cout, 3, 1, tf_padding)
        self.bn2 = _bn(cout, keras_bn)
        self.down = self.down_bn = None
        if stride != 1 or cin != cout:
            self.down = _conv(cin, cout, 1, stride, tf_padding)
            self.down_bn = _bn(cout, keras_bn)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        shortcut = x if self.down is None else self.down_bn(self.down(x))
        return F.relu(y + shortcut, inplace=True)


class ResNet18Cifar(nn.Module):
    """mixmask_tf.backbones.resnet18_cifar: 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2], GAP."""

    def __init__(self, in_channels, tf_padding=False, keras_bn=False):
        super().__init__()
        self.stem_conv = _conv(in_channels, 64, 3, 1, tf_padding)
        self.stem_bn = _bn(64, keras_bn)
        blocks, cin = OrderedDict(), 64
        for stage, filters in enumerate([64, 128, 256, 512]):
            for block in range(2):
                stride = 2 if (block == 0 and stage > 0) else 1
                # The Keras CIFAR ResNet-18 pads as PyTorch does (1 on every side), so its stride-2
                # convs are plain nn.Conv2d even with --tf_padding (which only the small ConvNet needs).
                blocks[f"s{stage}b{block}"] = BasicBlock(cin, filters, stride, False, keras_bn)
                cin = filters
        self.blocks = nn.Sequential(blocks)
        self.num_features = 512

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem_conv(x)), inplace=True)
        return self.blocks(x).mean(dim=(2, 3))


class Encoder(nn.Module):
    """Backbone + MoCo v2 head (Linear(F, hidden) - ReLU - Linear(hidden, D), with biases, no BN)."""

    def __init__(self, backbone, embedding_dim=128, hidden_dim=None):
        super().__init__()
        self.backbone = backbone
        features = backbone.num_features
        hidden = hidden_dim or features
        self.head = nn.Sequential(OrderedDict([
            ("hidden0", nn.Linear(features, hidden)),
            ("hidden0_relu", nn.ReLU(inplace=True)),
            ("out", nn.Linear(hidden, embedding_dim)),
        ]))

    def forward(self, x):
        return self.head(self.backbone(x))


def build_encoder(name, image_shape, width=32, embedding_dim=128, hidden_dim=None, tf_padding=False,
                  keras_bn=False):
    channels = image_shape[2]
    if name == "small_convnet":
        backbone = SmallConvNet(channels, width, tf_padding, keras_bn)
    elif name == "resnet18_cifar":
        backbone = ResNet18Cifar(channels, tf_padding, keras_bn)
    else:
        raise ValueError(f"unknown backbone {name!r}")
    return Encoder(backbone, embedding_dim, hidden_dim)


# ----------------------------------------------------------------------------------------------
# MixMask: masks and mixtures, on the device
# ----------------------------------------------------------------------------------------------


def _candidate_blocks(u, budget, grid_size, min_block_cells, min_aspect):
    """BEiT candidate blocks for uniforms u [..., 4] (area, aspect, top, left) and budgets.

    Returns (rect bool [..., G, G], fits bool [...]) with `...` the broadcast of u[..., 0] and
    budget: area ~ U(min_block_cells, budget) (bounds may be inverted), aspect log-uniform in
    [min_aspect, 1 / min_aspect], h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect))
    (half to even, like Python's round), valid ("fits") only if h < G and w < G, top / left
    uniform over [0, G - h] / [0, G - w].
    """
    g = grid_size
    log_lo, log_hi = math.log(min_aspect), math.log(1.0 / min_aspect)
    area = min_block_cells + (budget - min_block_cells) * u[..., 0]
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    h = torch.round(torch.sqrt(area * aspect)).long()
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < g) & (w < g)
    h, w = h.clamp(0, g - 1), w.clamp(0, g - 1)
    top = torch.minimum(torch.floor(u[..., 2] * (g - h + 1)).long(), g - h)
    left = torch.minimum(torch.floor(u[..., 3] * (g - w + 1)).long(), g - w)
    cell = torch.arange(g, device=u.device)
    in_rows = (cell >= top[..., None]) & (cell < (top + h)[..., None])
    in_cols = (cell >= left[..., None]) & (cell < (left + w)[..., None])
    return in_rows[..., :, None] & in_cols[..., None, :], fits


def blocked_grid_masks(num, grid_size, target, min_block_cells=4, min_aspect=BEIT_MIN_ASPECT,
                       max_attempts=BEIT_MAX_ATTEMPTS, device=None, generator=None, precompute=None):
    """`num` independent BEiT block-wise masks, bool [num, G, G], with torch ops only.

    The BEiT generator (and `mixmask_tf.ops.masks._blocked_masks`), vectorised over masks and over
    the attempts of one round: a round draws its `max_attempts` candidate blocks at once
    (`_candidate_blocks`) and commits the *first* valid one that adds 1 .. budget new cells; a
    round with none ends the mask, as does reaching the target. Failed attempts leave the mask
    unchanged, so drawing a round's attempts together gives exactly BEiT's sequential
    distribution. Each committed round adds >= 1 cell, so `target` rounds (a static bound)
    suffice: a fixed, data-independent loop (no host sync, no graph break under torch.compile).

    Only a block's area depends on the budget (target - cells set so far), which takes one of
    `target` values: with `precompute` (default: when that tensor is small, e.g. G = 4 and one
    mask) the candidate blocks of every round are built for every budget in one batch of ops
    before the loop, and each round only picks its budget's blocks (about half the kernel
    launches; the same masks for the same random draws).

    Args:
      num: number of masks (1: one mask per batch, as the reference code and mixmask-tf's default).
      grid_size: G.
      target: cells to set, floor(ratio * G**2) (python int).
      min_block_cells: minimum block area (BEiT 4).
      generator: optional torch.Generator of the uniform draws.
      precompute: True / False / None (auto).

    Returns:
      bool [num, G, G]; True keeps the image's own pixels.
    """
    g = grid_size
    mask = torch.zeros(num, g, g, dtype=torch.bool, device=device)
    if target <= 0:
        return mask
    u = torch.rand(target, num, max_attempts, 4, device=device, generator=generator)
    if precompute is None:
        precompute = target * num * max_attempts * target * g * g <= (1 << 22)
    if precompute:
        budgets = torch.arange(1, target + 1, device=device, dtype=u.dtype)  # [B]
        rect_all, fits_all = _candidate_blocks(u[..., None, :], budgets, g, min_block_cells, min_aspect)
        rect_all, fits_all = rect_all.transpose(2, 3), fits_all.transpose(2, 3)  # [R, num, B, A, (G, G)]
    rows = torch.arange(num, device=device)
    count = torch.zeros(num, dtype=torch.long, device=device)
    active = torch.ones(num, dtype=torch.bool, device=device)
    for r in range(target):
        budget = target - count  # [num]
        if precompute:
            b = (budget - 1).clamp(min=0)
            rect, fits = rect_all[r, rows, b], fits_all[r, rows, b]  # [num, A, G, G], [num, A]
        else:
            rect, fits = _candidate_blocks(u[r], budget[:, None].to(u.dtype), g, min_block_cells, min_aspect)
        new = (rect & ~mask[:, None]).sum(dim=(-2, -1))  # [num, A]
        valid = fits & (new > 0) & (new <= budget[:, None])
        commit = active & valid.any(dim=1)
        first = valid.to(torch.int32).argmax(dim=1)  # the first valid attempt
        mask = mask | (rect[rows, first] & commit[:, None, None])
        count = count + torch.where(commit, new[rows, first], 0)
        active = commit & (count < target)
    return mask


def nearest_indices(cells, pixels):
    """Source cell of every pixel, floor(p * cells / pixels) (mixmask_tf.ops.masks; F.interpolate "nearest")."""
    return [(p * cells) // pixels for p in range(pixels)]


def inverse_permutation(perm):
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)
    return inv


def moco_infonce(query, key, queue, temperature):
    """Per-sample MoCo InfoNCE, [N]: CE([q.k, q.queue^T] / T, label 0)."""
    positive = (query * key).sum(dim=1, keepdim=True)
    negative = query @ queue.t()
    logits = torch.cat([positive, negative], dim=1) / temperature
    labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels, reduction="none")


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------


class MoCoMixMask:
    """MoCo v2 (+ MixMask) trainer; `step(views)` is one full train step.

    Args:
      encoder: query Encoder (the key encoder is a deep copy, no gradients).
      branch: "none" or "mixmask".
      image_shape: (H, W, C).
      queue_size, embedding_dim, temperature, momentum: MoCo (K, D, T, key EMA m).
      lr, sgd_momentum, weight_decay: torch.optim.SGD (coupled weight decay on every parameter).
      grid_size, mask_ratio, min_block_cells, permutation: MixMask ("reverse" or "random").
      device, amp ("none", "bf16", "fp16"), channels_last.
      optimizer_impl: "fused", "foreach" or "for-loop" (torch.optim.SGD implementations).
      mask_on: "device" (default: the mask is drawn and upsampled on `device` inside the step) or
        "host" (drawn on the CPU, then copied: the reference code's way; the same on a CPU device).
    """

    def __init__(self, encoder, branch="mixmask", image_shape=SMALL_SHAPE, queue_size=4096, embedding_dim=128,
                 temperature=0.2, momentum=0.99, lr=0.06, sgd_momentum=0.9, weight_decay=5e-4, grid_size=4,
                 mask_ratio=0.5, min_block_cells=4, permutation="reverse", device="cpu", amp="none",
                 channels_last=False, optimizer_impl="foreach", mask_on="device"):
        if branch not in ("none", "mixmask"):
            raise ValueError(f"unknown branch {branch!r}")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.branch = branch
        self.image_shape = tuple(image_shape)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.queue_size = int(queue_size)
        self.query = encoder.to(self.device, memory_format=self.memory_format).train()
        self.key = copy.deepcopy(self.query).train()
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.q_params = list(self.query.parameters())
        self.k_params = list(self.key.parameters())
        self.queue = F.normalize(torch.randn(queue_size, embedding_dim, device=self.device), dim=1)
        self.queue_ptr = torch.zeros((), dtype=torch.long, device=self.device)
        impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}[optimizer_impl]
        self.optimizer = torch.optim.SGD(self.q_params, lr=lr, momentum=sgd_momentum, weight_decay=weight_decay,
                                         **impl)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None
        self.grid_size = int(grid_size)
        self.target_cells = math.floor(mask_ratio * grid_size * grid_size)  # as float64 floor in TF
        self.min_block_cells = min_block_cells
        self.permutation = permutation
        if mask_on not in ("device", "host"):
            raise ValueError(f"mask_on must be 'device' or 'host', got {mask_on!r}")
        self.mask_device = self.device if mask_on == "device" else torch.device("cpu")
        height, width = self.image_shape[:2]
        self.mask_rows = torch.tensor(nearest_indices(grid_size, height), device=self.mask_device)
        self.mask_cols = torch.tensor(nearest_indices(grid_size, width), device=self.mask_device)
        self._reverse = {}

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def draw_mask(self):
        """One full-resolution mask for the batch, float [1, 1, H, W] (1 keeps the own pixel)."""
        grid = blocked_grid_masks(1, self.grid_size, self.target_cells, self.min_block_cells, device=self.mask_device)
        full = grid[:, self.mask_rows[:, None], self.mask_cols[None, :]]  # [1, H, W]
        return full[:, None].float().to(self.device, non_blocking=True)

    def draw_perm(self, n):
        if self.permutation == "random":
            return torch.randperm(n, device=self.device)
        if n not in self._reverse:
            self._reverse[n] = torch.arange(n - 1, -1, -1, device=self.device)
        return self._reverse[n]

    def embed_query(self, images):
        with self.autocast():
            z = self.query(images.contiguous(memory_format=self.memory_format))
        return F.normalize(z.float(), dim=1)  # the losses in float32, as mixmask-tf

    def step(self, views, mask=None, perm=None):
        """One train step on views [N, 2, C, H, W] (view 1 query, view 2 key).

        mask [1 or N, 1, H, W] and perm [N] are drawn inside the step unless given (`--verify`
        passes the ones mixmask-tf drew). Returns a dict of detached scalar tensors.
        """
        x1, x2 = views[:, 0], views[:, 1]
        n = x1.shape[0]
        with torch.no_grad():  # key encoder EMA, before the keys are encoded
            torch._foreach_mul_(self.k_params, self.momentum)
            torch._foreach_add_(self.k_params, self.q_params, alpha=1.0 - self.momentum)
        q1 = self.embed_query(x1)
        with torch.no_grad():
            with self.autocast():
                k2 = self.key(x2.contiguous(memory_format=self.memory_format))
            k2 = F.normalize(k2.float(), dim=1)
        terms = {"loss_clean": moco_infonce(q1, k2, self.queue, self.temperature).mean()}
        lam = None
        if self.branch == "mixmask":
            if mask is None:
                mask = self.draw_mask()
            if perm is None:
                perm = self.draw_perm(n)
                switch = perm if self.permutation == "reverse" else inverse_permutation(perm)
            else:
                switch = inverse_permutation(perm)
            mask = mask.to(x1.dtype)
            mixed = mask * x1 + (1.0 - mask) * x1[perm]
            q_mix = self.embed_query(mixed)
            lam = mask.mean(dim=(1, 2, 3))  # measured lambda, [1] (per batch) or [N]
            weights = lam.expand(n)
            terms["loss_mix"] = (weights * moco_infonce(q_mix, k2, self.queue, self.temperature)).mean()
            terms["loss_switch"] = ((1.0 - weights[switch])
                                    * moco_infonce(q_mix[switch], k2, self.queue, self.temperature)).mean()
        loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        with torch.no_grad():  # enqueue the clean keys, once per step
            index = (self.queue_ptr + torch.arange(n, device=self.device)) % self.queue_size
            self.queue.index_copy_(0, index, k2)
            self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)
        out = {name: value.detach() for name, value in terms.items()}
        out["loss"] = loss.detach()
        if lam is not None:
            out["lambda"] = lam.mean().detach()
        return out


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------


def _bool_list(text):
    values = []
    for v in text.split(","):
        v = v.strip().lower()
        if v not in ("true", "false", "1", "0"):
            raise argparse.ArgumentTypeError(f"expected true/false values, got {v!r}")
        values.append(v in ("true", "1"))
    return values


def _list(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="PyTorch 2 reference of mixmask-tf's MoCo v2 + MixMask train step.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for installation and commands.")
    p.add_argument("--backbones", type=_list, default=["small_convnet"], help="small_convnet,resnet18_cifar")
    p.add_argument("--branches", type=_list, default=["none", "mixmask"], help="none,mixmask")
    p.add_argument("--modes", type=_list, default=["eager", "compile"], help="eager,compile")
    p.add_argument("--compile_mode", default=None,
                   help="torch.compile mode (default: torch's default; e.g. max-autotune-no-cudagraphs).")
    p.add_argument("--compiled_autograd", type=_bool_list, default=[False],
                   help="Also capture the backward in the compiled step (torch._dynamo.config.compiled_autograd).")
    p.add_argument("--channels_last", type=_bool_list, default=[False], help="true/false list")
    p.add_argument("--tf_padding", type=_bool_list, default=[False],
                   help="Keras 'same' padding (pad after) for stride-2 convs instead of torch's padding=1.")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (this machine has 2 cores).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--tf32", type=_bool_list, default=[True], help="cuda: allow TF32 (TensorFlow's default).")
    p.add_argument("--optimizer_impl", default="auto", choices=["auto", "fused", "foreach", "for-loop"],
                   help="torch.optim.SGD implementation (auto: fused in eager, foreach under torch.compile).")
    p.add_argument("--width", type=int, default=32, help="small_convnet width")
    p.add_argument("--small_image_shape", default="28,28,1")
    p.add_argument("--resnet_image_shape", default="32,32,3")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--queue_size", type=int, default=4096)
    p.add_argument("--grid_size", type=int, default=4)
    p.add_argument("--permutation", default="reverse", choices=["reverse", "random"])
    p.add_argument("--mask_on", default="device", choices=["device", "host"],
                   help="where the MixMask mask is drawn (host: on the CPU, then copied; same as device on cpu)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation) per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write rows and machine info here")
    p.add_argument("--verify", default=None, metavar="NPZ",
                   help="replay the TF step dumped by benchmarks.dump_reference_step and compare")
    p.add_argument("--verify_modes", type=_list, default=None,
                   help="modes to verify (default: --modes)")
    return p.parse_args(argv)


def cpu_name():
    from benchmarks.matmul_ceiling import cpu_model  # imports no framework: safe in the torch venv

    return cpu_model()


def machine_info(args):
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "device": args.device, "mkldnn": torch.backends.mkldnn.is_available()}
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    return info


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, steps, warmup, device):
    """(median seconds per call after `warmup` untimed calls, seconds of the first call)."""
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), first


def _image_shape(args, backbone):
    text = args.small_image_shape if backbone == "small_convnet" else args.resnet_image_shape
    return tuple(int(v) for v in text.split(","))


def _optimizer_impl(args, mode):
    if args.optimizer_impl != "auto":
        return args.optimizer_impl
    return "foreach" if mode == "compile" else "fused"


def _configure_compile(compiled_autograd):
    torch._dynamo.reset()  # a fresh cache per row (same code object, new trainer)
    if hasattr(torch._dynamo.config, "compiled_autograd"):
        torch._dynamo.config.compiled_autograd = bool(compiled_autograd)
    elif compiled_autograd:
        raise SystemExit("this torch has no torch._dynamo.config.compiled_autograd")


def make_step(trainer, mode, args, compiled_autograd=False):
    if mode == "eager":
        return trainer.step
    if mode != "compile":
        raise SystemExit(f"unknown mode {mode!r}")
    _configure_compile(compiled_autograd)
    return torch.compile(trainer.step, mode=args.compile_mode)


def measure(args, device, backbone, branch, mode, channels_last, tf_padding, compiled_autograd):
    """(median seconds per step, seconds of the first call) of one configuration, fresh trainer."""
    shape = _image_shape(args, backbone)
    torch.manual_seed(args.seed)
    encoder = build_encoder(backbone, shape, args.width, tf_padding=tf_padding)
    trainer = MoCoMixMask(
        encoder, branch=branch, image_shape=shape, queue_size=args.queue_size, grid_size=args.grid_size,
        permutation=args.permutation, device=device, amp=args.amp, channels_last=channels_last,
        optimizer_impl=_optimizer_impl(args, mode), mask_on=args.mask_on)
    h, w, c = shape
    views = torch.randn(args.batch_size, 2, c, h, w, device=device)
    step = make_step(trainer, mode, args, compiled_autograd)
    return time_call(lambda: step(views), args.steps, args.warmup, device)


def benchmark(args):
    device = torch.device(args.device)
    info = machine_info(args)
    print(f"torch {info['torch']}, device {args.device} "
          f"({info.get('gpu') or info['cpu']}), threads {info['threads']}, amp {args.amp}, "
          f"batch {args.batch_size}, queue {args.queue_size}, grid {args.grid_size}, "
          f"steps {args.steps} (median) after {args.warmup} warm-up, load avg {info.get('loadavg_start')}",
          flush=True)
    print(f"{'backbone':15s} {'branch':8s} {'mode':8s} {'c_last':6s} {'tf_pad':6s} {'c_autograd':10s} "
          f"{'tf32':5s} {'ms/step':>8s} {'img/s':>7s} {'ratio':>6s} {'first(s)':>8s}", flush=True)
    rows = []
    configs = itertools.product(args.backbones, args.tf32 if device.type == "cuda" else [False],
                                args.channels_last, args.tf_padding, args.modes)
    for backbone, tf32, channels_last, tf_padding, mode in configs:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        for compiled_autograd in (args.compiled_autograd if mode == "compile" else [False]):
            plain = None
            for branch in args.branches:
                seconds, first = measure(args, device, backbone, branch, mode, channels_last, tf_padding,
                                         compiled_autograd)
                if branch == "none":
                    plain = seconds
                row = {"backbone": backbone, "image_shape": list(_image_shape(args, backbone)), "branch": branch,
                       "mode": mode, "compile_mode": args.compile_mode if mode == "compile" else None,
                       "compiled_autograd": compiled_autograd, "channels_last": channels_last,
                       "tf_padding": tf_padding, "tf32": tf32, "amp": args.amp,
                       "optimizer_impl": _optimizer_impl(args, mode), "mask_on": args.mask_on,
                       "batch_size": args.batch_size, "ms_per_step": seconds * 1e3,
                       "images_per_second": args.batch_size / seconds,
                       "ratio_to_none": seconds / plain if plain and branch != "none" else None,
                       "first_call_seconds": first}
                rows.append(row)
                ratio = f"{row['ratio_to_none']:.2f}x" if row["ratio_to_none"] else "-"
                print(f"{backbone:15s} {branch:8s} {mode:8s} {channels_last!s:6s} {tf_padding!s:6s} "
                      f"{compiled_autograd!s:10s} {tf32!s:5s} {row['ms_per_step']:8.1f} "
                      f"{row['images_per_second']:7.0f} {ratio:>6s} {(first or 0):8.1f}", flush=True)
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = list(os.getloadavg())
        print(f"load avg at the end: {info['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "rows": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


# ----------------------------------------------------------------------------------------------
# Verification against a dumped mixmask-tf step
# ----------------------------------------------------------------------------------------------

_KERAS_VARS = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}
_HEAD_LAYERS = re.compile(r"hidden\d+|out")


def torch_name(keras_path):
    """Keras weight path ('conv0/kernel', 's1b0_down_bn/gamma', 'hidden0/bias') -> Encoder state_dict key."""
    layer, var = keras_path.rsplit("/", 1)
    tvar = _KERAS_VARS[var]
    if _HEAD_LAYERS.fullmatch(layer):
        return f"head.{layer}.{tvar}"
    block = re.fullmatch(r"(s\d+b\d+)_(conv1|bn1|conv2|bn2|down|down_bn)", layer)
    if block:
        return f"backbone.blocks.{block[1]}.{block[2]}.{tvar}"
    return f"backbone.{layer}.{tvar}"


def keras_to_torch(array):
    """Keras layout -> torch layout: conv HWIO -> OIHW, dense [in, out] -> [out, in]."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def torch_to_keras(array):
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:
        return array.T
    return array


def load_encoder(module, data, prefix, names):
    state = module.state_dict()
    for name in names:
        key = torch_name(name)
        value = torch.from_numpy(keras_to_torch(data[f"{prefix}/{name}"]))
        if state[key].shape != value.shape:
            raise SystemExit(f"{name} -> {key}: shape {tuple(value.shape)} vs torch {tuple(state[key].shape)}")
        with torch.no_grad():
            state[key].copy_(value)


def _mask_distribution_check(data, meta, device):
    """TV distance between the TF and torch blocked-mask cell-count distributions."""
    if "mask_stats/counts" not in data:
        return True
    tf_counts = data["mask_stats/counts"]
    g = meta["grid_size"]
    target = math.floor(meta["mask_ratio"] * g * g)
    gen = torch.Generator(device=device).manual_seed(1234)
    masks = blocked_grid_masks(20000, g, target, meta["min_block_cells"], device=device, generator=gen)
    torch_counts = masks.sum(dim=(1, 2)).cpu().numpy()
    bins = np.arange(g * g + 2)
    p = np.histogram(tf_counts, bins)[0] / len(tf_counts)
    q = np.histogram(torch_counts, bins)[0] / len(torch_counts)
    tv = 0.5 * np.abs(p - q).sum()
    cell_tv = np.abs(data["mask_stats/cell_freq"] - masks.float().mean(0).cpu().numpy()).max()
    ok = tv < 0.05 and cell_tv < 0.05
    print(f"mask generator ({g}x{g}, target {target} cells): mean cells TF {tf_counts.mean():.3f} "
          f"({len(tf_counts)} draws) vs torch {torch_counts.mean():.3f} ({len(torch_counts)} draws); "
          f"count-histogram TV distance {tv:.4f}, max per-cell frequency diff {cell_tv:.4f} "
          f"-> {'ok' if ok else 'FAIL'} (< 0.05)")
    print("  count histogram TF    : " + " ".join(f"{v:.3f}" for v in p[: target + 1]))
    print("  count histogram torch : " + " ".join(f"{v:.3f}" for v in q[: target + 1]))
    return ok


def verify(args):
    """Replays a dumped mixmask-tf step in torch; exit status 1 if anything is out of tolerance."""
    data = dict(np.load(args.verify))
    meta = json.loads(str(data["meta"]))
    names = meta["weight_names"]
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(False)
    shape = tuple(meta["image_shape"])
    print(f"verify {args.verify}: mixmask-tf {meta['framework']} + mixmask, {meta['backbone']} "
          f"(width {meta['width']}), input {shape}, batch {meta['batch_size']}, queue {meta['queue_size']}, "
          f"grid {meta['grid_size']}, {meta['steps']} step(s), TF {meta['tensorflow']} / Keras {meta['keras']}, "
          f"torch {torch.__version__} on {args.device}")
    all_ok = _mask_distribution_check(data, meta, device)
    modes = args.verify_modes or args.modes
    for mode in modes:
        for channels_last in args.channels_last:
            torch.manual_seed(args.seed)
            encoder = build_encoder(meta["backbone"], shape, meta["width"], meta["embedding_dim"], meta["hidden_dim"],
                                    tf_padding=True, keras_bn=True)
            trainer = MoCoMixMask(
                encoder, branch="mixmask", image_shape=shape, queue_size=meta["queue_size"],
                embedding_dim=meta["embedding_dim"], temperature=meta["temperature"], momentum=meta["moco_momentum"],
                lr=meta["learning_rate"], sgd_momentum=meta["sgd_momentum"], weight_decay=meta["weight_decay"],
                grid_size=meta["grid_size"], mask_ratio=meta["mask_ratio"], min_block_cells=meta["min_block_cells"],
                permutation=meta["permutation"], device=device, channels_last=channels_last,
                optimizer_impl=_optimizer_impl(args, mode))
            load_encoder(trainer.query, data, "q", names)
            load_encoder(trainer.key, data, "k", names)
            with torch.no_grad():
                trainer.queue.copy_(torch.from_numpy(data["queue"]))
                trainer.queue_ptr.fill_(int(data["queue_ptr"]))
            step = make_step(trainer, mode, args)
            views = torch.from_numpy(data["views"]).permute(0, 1, 4, 2, 3).contiguous().to(device)
            print(f"\n[{mode}, channels_last={channels_last}] loss terms (TF vs torch):")
            loss_ok = True
            for s in range(meta["steps"]):
                mask = torch.from_numpy(data[f"step{s}/mask"]).permute(0, 3, 1, 2).contiguous().to(device)
                perm = torch.from_numpy(data[f"step{s}/perm"]).to(device)
                out = step(views, mask, perm)
                for term in TERMS:
                    ref = float(data[f"step{s}/{term}"])
                    got = float(out[term])
                    rel = abs(got - ref) / max(abs(ref), 1e-12)
                    ok = rel <= 1e-4
                    loss_ok &= ok
                    print(f"  step {s} {term:12s} TF {ref:.8f}  torch {got:.8f}  abs {abs(got - ref):.2e}  "
                          f"rel {rel:.2e} {'ok' if ok else 'FAIL'}")
            weights_ok = True
            print(f"[{mode}, channels_last={channels_last}] weights after {meta['steps']} step(s): "
                  "max |torch - TF| (and max |update| for scale)")
            for prefix, module in (("q", trainer.query), ("k", trainer.key)):
                state = module.state_dict()
                groups = {"params": [], "bn_stats": []}
                for name in names:
                    got = torch_to_keras(state[torch_name(name)].detach().cpu().numpy())
                    ref = data[f"{prefix}_after/{name}"]
                    moved = np.abs(ref - data[f"{prefix}/{name}"]).max()
                    group = "bn_stats" if "moving_" in name else "params"
                    groups[group].append((float(np.abs(got - ref).max()), name, float(moved)))
                for group, items in groups.items():
                    worst = max(items)
                    ok = worst[0] <= 1e-4
                    weights_ok &= ok
                    print(f"  {prefix}_{group:9s} max abs diff {worst[0]:.2e} ({worst[1]}); max |update| "
                          f"{max(m for _, _, m in items):.2e} {'ok' if ok else 'FAIL'}")
            queue_diff = float(np.abs(trainer.queue.cpu().numpy() - data["queue_after"]).max())
            ptr_ok = int(trainer.queue_ptr) == int(data["queue_ptr_after"])
            q_ok = queue_diff <= 1e-4 and ptr_ok
            weights_ok &= q_ok
            print(f"  queue       max abs diff {queue_diff:.2e}; queue_ptr torch {int(trainer.queue_ptr)} "
                  f"TF {int(data['queue_ptr_after'])} {'ok' if q_ok else 'FAIL'}")
            all_ok &= loss_ok and weights_ok
    print(f"\nverify: {'PASS' if all_ok else 'FAIL'} (loss terms rel <= 1e-4, weights / BN stats / queue abs <= 1e-4)")
    return 0 if all_ok else 1


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device")
        torch.backends.cudnn.benchmark = True
    if args.verify:
        return verify(args)
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
