#!/usr/bin/env python3
"""PyTorch CPU reference for `just bench`: training and inference speed of the three ferbayes
networks, layer for layer as crates/models/src/{alexnet,vgg,densenet,layers,config}.rs build
them, at the (width, input_size) of the `cpu` and `paper` profiles of pipeline.toml.

Usage: torch_reference.py OUT.json | torch_reference.py --self-test

Threads: torch.set_num_threads(N), N = $RAYON_NUM_THREADS or os.cpu_count() (the Rust bench
uses the same variable). Batch 32, random inputs and labels.

- train img/s: model.train(); forward + cross-entropy + backward + optimizer step: each
  profile's optimizer from pipeline.toml (Adam with eps 1e-7 as ferbayes' optimiser, or SGD with
  the momentum given; paper profile: Adam for alexnet / densenet121, SGD momentum 0.9 for vgg16).
- forward img/s: model.eval() under torch.inference_mode().
- forward_flops_per_image: torch.utils.flop_counter.FlopCounterMode on one eval forward
  (convolutions and matmuls only, a multiply-add counted as 2 FLOPs), divided by the batch.

Each measurement warms up, then times 3 windows, each until both a minimum time and a minimum
number of steps are reached (1 s and 2 steps; at the paper sizes 0.5 s and 1 step, so that the
script stays within a few minutes on two cores), and keeps the fastest window: on a shared
machine that is the least disturbed one.

Packed ensemble (issue "packed ensembles"; skipped with FER_BENCH_PACKED=0): the G members of
the profile's deep ensemble (`ensemble_members`, default 15) trained in one process as one
network whose layers are block-diagonal over members (Packed-Ensembles with alpha = 1: every
member keeps the full width). Member g's own batch of 32 faces is input channel g, (32, G, S, S);
every conv is grouped (groups = G, G times the channels), BatchNorm runs over G*C channels (per
member statistics), pools and dropout are unchanged, DenseNet concatenates per member (and its
transitions are grouped 1x1 convs), the flatten before fc1 keeps members apart (B, G, F), and the
fully connected layers are G independent ones, weight (G, out, in), computed by baddbmm
(FER_BENCH_PACKED_FC=einsum|conv1d for the alternatives, measured no faster). Logits (B, G, 8);
loss = sum over members of each member's mean cross-entropy against its own random labels; one
optimizer (the profile's, as above) over all packed parameters. Timed as train img/s:
packed_train_member_img_s = steps/s x 32 x G, to compare with train_img_s (one network at a
time, the ensemble's usual way). G: $FER_BENCH_PACK, else ensemble_members (at most 5 at the
paper sizes, where a 15-member step takes a minute on two cores), the Rust bench's rule; the row
records it.

FER_BENCH_DEVICE=cuda (as the Rust bench): every row on the first GPU instead, FP32 with TF32
off (torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32 False), cuDNN with PyTorch's
default algorithm choice (cudnn.benchmark False); each step ends with torch.cuda.synchronize(),
as the Rust bench waits for the device after each step. The rows record "device".

FER_BENCH_ONLY=cpu/densenet121,paper/vgg16 (as the Rust bench) measures only the rows listed.
--self-test: packed networks of 3 members against 3 single networks holding copies of the packed
members' blocks, all three archs at the cpu sizes: same logits per member in eval mode (atol
1e-4) and in train mode without dropout, and the same gradients; nothing is written.

Writes a JSON list of rows {profile, arch, width, input_size, train_img_s, forward_img_s,
forward_flops_per_image, torch_version, threads, packed_members, packed_train_member_img_s} (the
last two absent with FER_BENCH_PACKED=0); progress goes to stderr.
"""

import json
import math
import os
import sys
import time
import tomllib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("cpu", "paper")
ARCHS = ("alexnet", "vgg16", "densenet121")
BATCH = 32
NUM_CLASSES = 8
HIDDEN = 256  # alexnet / vgg16 fc1 and fc2 width, not scaled
# Per measurement: warm-up steps, then WINDOWS timed windows of at least (seconds, steps) each;
# the fastest window counts (the machine may be shared: the best window is the least disturbed).
# Same rule as crates/train/benches/train.rs.
WINDOWS = 3
TIMING = {"cpu": (2, 1.0, 2), "paper": (1, 0.5, 1)}


def channels(x: int, width: float) -> int:
    """config.rs `scaled`: max(1, round(x * width)), Rust's round (half away from zero)."""
    v = math.floor(x * width + 0.5)
    return max(1, v)


def merge(base: dict, overlay: dict) -> dict:
    """The Rust config's merge: tables merge key by key, other values are replaced."""
    out = dict(base)
    for k, v in overlay.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def profile_settings(profile: str) -> dict:
    with open(REPO / "pipeline.toml", "rb") as f:
        raw = tomllib.load(f)
    return merge(raw["defaults"], raw.get("profiles", {}).get(profile, {}))


# ---------------------------------------------------------------------------------------------
# The networks (crates/models/src). BatchNorm: eps 1e-5, momentum 0.1 (PyTorch defaults).


class AlexNet(nn.Module):
    # (channels before scaling, kernel, padding, max pool after), alexnet.rs CONVS
    CONVS = [(64, 5, 2, True), (128, 5, 2, True), (256, 3, 1, False), (256, 3, 1, False),
             (128, 3, 1, True)]

    def __init__(self, width: float, size: int, p: float):
        super().__init__()
        layers, in_c, side = [], 1, size
        for c, k, pad, pool in self.CONVS:
            out_c = channels(c, width)
            layers += [nn.Conv2d(in_c, out_c, k, 1, pad, bias=True), nn.BatchNorm2d(out_c),
                       nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            in_c = out_c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Dropout(p), nn.Linear(in_c * side * side, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
            nn.Dropout(p), nn.Linear(HIDDEN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, NUM_CLASSES),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class Vgg16(nn.Module):
    BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]

    def __init__(self, width: float, size: int, p: float):
        super().__init__()
        layers, in_c, side = [], 1, size
        for block in self.BLOCKS:
            for c in block:
                out_c = channels(c, width)
                layers += [nn.Conv2d(in_c, out_c, 3, 1, 1, bias=True), nn.ReLU()]
                in_c = out_c
            layers.append(nn.MaxPool2d(2))
            side //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Dropout(p), nn.Linear(in_c * side * side, HIDDEN), nn.ReLU(),
            nn.Dropout(p), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
            nn.Linear(HIDDEN, NUM_CLASSES),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class DenseLayer(nn.Module):
    """BN → ReLU → conv 1x1 (4k) → BN → ReLU → conv 3x3 pad 1 (k) → dropout; no conv bias"""

    def __init__(self, in_c: int, growth: int, p: float):
        super().__init__()
        mid = 4 * growth
        self.norm1 = nn.BatchNorm2d(in_c)
        self.conv1 = nn.Conv2d(in_c, mid, 1, 1, 0, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return self.drop(y)


class DenseNet121(nn.Module):
    BLOCKS = [6, 12, 24, 16]

    def __init__(self, width: float, size: int, p: float):
        super().__init__()
        growth = channels(32, width)
        c = channels(64, width)
        self.conv0 = nn.Conv2d(1, c, 7, 2, 3, bias=False)
        self.norm0 = nn.BatchNorm2d(c)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for b, n in enumerate(self.BLOCKS):
            layers = nn.ModuleList()
            for _ in range(n):
                layers.append(DenseLayer(c, growth, p))
                c += growth
            self.blocks.append(layers)
            if b + 1 < len(self.BLOCKS):
                out = max(c // 2, 1)
                self.transitions.append(nn.Sequential(
                    nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, out, 1, 1, 0, bias=False),
                    nn.AvgPool2d(2)))
                c = out
        self.norm5 = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, NUM_CLASSES)

    def forward(self, x):
        x = self.pool0(F.relu(self.norm0(self.conv0(x))))
        for b, layers in enumerate(self.blocks):
            for layer in layers:
                # As densenet.rs: the k new maps are concatenated to the layer's input.
                x = torch.cat([x, layer(x)], 1)
            if b < len(self.transitions):
                x = self.transitions[b](x)
        x = F.relu(self.norm5(x)).flatten(2).mean(-1)
        return self.classifier(x)


NETS = {"alexnet": AlexNet, "vgg16": Vgg16, "densenet121": DenseNet121}


def kaiming(model: nn.Module):
    """init.rs: conv / linear weights Kaiming normal std sqrt(2 / fan_in), biases zero."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Packed ensembles (Laurent et al. 2023, "Packed-Ensembles", with alpha = 1: no thinning, every
# member keeps the full width): the G members of a deep ensemble as one network whose layers are
# block-diagonal over members. Member m owns the m-th block of every layer's channels, so a
# packed activation (B, G*C, H, W) is member-major; its input is (B, G, S, S), member m's own
# faces on channel m. Convolutions are grouped (groups = G), BatchNorm over G*C channels keeps
# per-member statistics by itself, pools and dropout act elementwise / per channel anyway.

# How PackedLinear computes ($FER_BENCH_PACKED_FC): "bmm" (baddbmm over members, the default),
# "einsum", or "conv1d" (a grouped 1x1 Conv1d). Forward + backward at G = 15, batch 32, torch
# 2.x CPU, 2 cores: bmm and einsum within noise of each other (8192 -> 256: ~0.45 s both), conv1d
# 2-4x slower at every size measured.
PACKED_FC = os.environ.get("FER_BENCH_PACKED_FC", "bmm")


class PackedLinear(nn.Module):
    """G independent fully connected layers: (B, G, in) -> (B, G, out); weight (G, out, in)."""

    def __init__(self, g: int, in_f: int, out_f: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(g, out_f, in_f))
        self.bias = nn.Parameter(torch.zeros(g, out_f))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / in_f))  # kaiming(), per member

    def forward(self, x):
        if PACKED_FC == "bmm":
            y = torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1),
                              self.weight.transpose(1, 2))  # (G, B, out)
            return y.transpose(0, 1)
        if PACKED_FC == "einsum":
            return torch.einsum("bgi,goi->bgo", x, self.weight) + self.bias
        b, g, i = x.shape
        y = F.conv1d(x.reshape(b, g * i, 1), self.weight.reshape(-1, i, 1),
                     self.bias.reshape(-1), groups=g)
        return y.reshape(b, g, -1)


class PackedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, G, F) features: G*F channels, member-major as the convolutions."""

    def forward(self, x):
        b, g, f = x.shape
        return super().forward(x.reshape(b, g * f)).reshape(b, g, f)


class PackedFlatten(nn.Module):
    """(B, G*C, H, W) -> (B, G, C*H*W): each member's features flattened as nn.Flatten does."""

    def __init__(self, g: int):
        super().__init__()
        self.g = g

    def forward(self, x):
        return x.reshape(x.shape[0], self.g, -1)


def pconv(g: int, in_c: int, out_c: int, k: int, stride: int, pad: int, bias: bool):
    return nn.Conv2d(g * in_c, g * out_c, k, stride, pad, bias=bias, groups=g)


def member_cat(x, y, g: int):
    """Per-member channel concatenation of (B, G*C, H, W) and (B, G*K, H, W)."""
    b, _, h, w = x.shape
    return torch.cat([x.reshape(b, g, -1, h, w), y.reshape(b, g, -1, h, w)], 2).reshape(b, -1, h, w)


# The packed networks mirror the single ones module for module (same names, same order), so that
# the self-test can pair their layers.


class PackedAlexNet(nn.Module):
    def __init__(self, width: float, size: int, p: float, g: int):
        super().__init__()
        layers, in_c, side = [], 1, size
        for c, k, pad, pool in AlexNet.CONVS:
            out_c = channels(c, width)
            layers += [pconv(g, in_c, out_c, k, 1, pad, True), nn.BatchNorm2d(g * out_c),
                       nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            in_c = out_c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            PackedFlatten(g),
            nn.Dropout(p), PackedLinear(g, in_c * side * side, HIDDEN), PackedBatchNorm1d(g * HIDDEN),
            nn.ReLU(),
            nn.Dropout(p), PackedLinear(g, HIDDEN, HIDDEN), PackedBatchNorm1d(g * HIDDEN), nn.ReLU(),
            PackedLinear(g, HIDDEN, NUM_CLASSES),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class PackedVgg16(nn.Module):
    def __init__(self, width: float, size: int, p: float, g: int):
        super().__init__()
        layers, in_c, side = [], 1, size
        for block in Vgg16.BLOCKS:
            for c in block:
                out_c = channels(c, width)
                layers += [pconv(g, in_c, out_c, 3, 1, 1, True), nn.ReLU()]
                in_c = out_c
            layers.append(nn.MaxPool2d(2))
            side //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            PackedFlatten(g),
            nn.Dropout(p), PackedLinear(g, in_c * side * side, HIDDEN), nn.ReLU(),
            nn.Dropout(p), PackedLinear(g, HIDDEN, HIDDEN), nn.ReLU(),
            PackedLinear(g, HIDDEN, NUM_CLASSES),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class PackedDenseLayer(nn.Module):
    def __init__(self, in_c: int, growth: int, p: float, g: int):
        super().__init__()
        mid = 4 * growth
        self.norm1 = nn.BatchNorm2d(g * in_c)
        self.conv1 = pconv(g, in_c, mid, 1, 1, 0, False)
        self.norm2 = nn.BatchNorm2d(g * mid)
        self.conv2 = pconv(g, mid, growth, 3, 1, 1, False)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return self.drop(y)


class PackedDenseNet121(nn.Module):
    def __init__(self, width: float, size: int, p: float, g: int):
        super().__init__()
        self.g = g
        growth = channels(32, width)
        c = channels(64, width)
        self.conv0 = pconv(g, 1, c, 7, 2, 3, False)
        self.norm0 = nn.BatchNorm2d(g * c)
        self.pool0 = nn.MaxPool2d(3, 2, 1)
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for b, n in enumerate(DenseNet121.BLOCKS):
            layers = nn.ModuleList()
            for _ in range(n):
                layers.append(PackedDenseLayer(c, growth, p, g))
                c += growth
            self.blocks.append(layers)
            if b + 1 < len(DenseNet121.BLOCKS):
                out = max(c // 2, 1)
                self.transitions.append(nn.Sequential(
                    nn.BatchNorm2d(g * c), nn.ReLU(), pconv(g, c, out, 1, 1, 0, False),
                    nn.AvgPool2d(2)))
                c = out
        self.norm5 = nn.BatchNorm2d(g * c)
        self.classifier = PackedLinear(g, c, NUM_CLASSES)

    def forward(self, x):
        x = self.pool0(F.relu(self.norm0(self.conv0(x))))
        for b, layers in enumerate(self.blocks):
            for layer in layers:
                x = member_cat(x, layer(x), self.g)
            if b < len(self.transitions):
                x = self.transitions[b](x)
        x = F.relu(self.norm5(x)).flatten(2).mean(-1)  # (B, G*C)
        return self.classifier(x.reshape(x.shape[0], self.g, -1))


PACKED_NETS = {"alexnet": PackedAlexNet, "vgg16": PackedVgg16, "densenet121": PackedDenseNet121}


def packed_loss(logits, ys):
    """Sum over members of each member's mean cross-entropy: logits (B, G, 8), labels (B, G)."""
    return F.cross_entropy(logits.reshape(-1, NUM_CLASSES), ys.reshape(-1),
                           reduction="sum") / logits.shape[0]


# ---------------------------------------------------------------------------------------------


DEVICE = torch.device(os.environ.get("FER_BENCH_DEVICE", "cpu").strip())


def timed(step, profile: str) -> float:
    """Steps per second of `step`: the best of WINDOWS windows after warming up (TIMING); on a
    GPU each step waits for the device."""
    warm, min_s, min_steps = TIMING[profile]
    if DEVICE.type == "cuda":
        inner = step

        def step():
            inner()
            torch.cuda.synchronize()
    for _ in range(warm):
        step()
    best = 0.0
    for _ in range(WINDOWS):
        n, start = 0, time.perf_counter()
        while True:
            step()
            n += 1
            elapsed = time.perf_counter() - start
            if n >= min_steps and elapsed >= min_s:
                break
        best = max(best, n / elapsed)
    return best


def optimizer(model: nn.Module, a: dict) -> torch.optim.Optimizer:
    """The profile's optimizer for arch settings `a` (Adam eps 1e-7, or SGD with momentum)."""
    if a["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=a["learning_rate"], eps=1e-7,
                                weight_decay=a["weight_decay"])
    return torch.optim.SGD(model.parameters(), lr=a["learning_rate"], momentum=a["momentum"],
                           weight_decay=a["weight_decay"])


def packed_trainer(profile: str, arch: str, s: dict, g: int):
    """A packed ensemble of g members as `bench` trains one network: its train step."""
    a = s["train"][arch]
    width, size = float(a["width"]), int(a["input_size"])
    torch.manual_seed(s["seed"])
    model = PACKED_NETS[arch](width, size, float(a["drop_rate"]), g)
    kaiming(model)
    model.to(DEVICE).train()
    opt = optimizer(model, a)
    xs = torch.rand(BATCH, g, size, size, device=DEVICE)
    ys = torch.randint(0, NUM_CLASSES, (BATCH, g), device=DEVICE)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = packed_loss(model(xs), ys)
        loss.backward()
        opt.step()
        loss.item()

    return train_step


def packed_members(profile: str, s: dict) -> int:
    """Members of the packed rows, the rule of crates/train/benches/train.rs: $FER_BENCH_PACK
    when set, else the profile's ensemble_members (at most 5 at the paper size)."""
    env = os.environ.get("FER_BENCH_PACK")
    if env:
        return int(env)
    members = int(s["train"].get("ensemble_members", 15))
    return min(members, 5) if profile == "paper" else members


def bench_packed(profile: str, arch: str, s: dict) -> tuple[int, float]:
    """(G, member images per second = train steps/s × BATCH × G) of the packed ensemble."""
    g = packed_members(profile, s)
    return g, timed(packed_trainer(profile, arch, s, g), profile) * BATCH * g


def bench(profile: str, arch: str, s: dict, threads: int, packed: bool) -> dict:
    a = s["train"][arch]
    width, size = float(a["width"]), int(a["input_size"])
    torch.manual_seed(s["seed"])
    model = NETS[arch](width, size, float(a["drop_rate"]))
    kaiming(model)
    model.to(DEVICE)
    opt = optimizer(model, a)
    xs = torch.rand(BATCH, 1, size, size, device=DEVICE)
    ys = torch.randint(0, NUM_CLASSES, (BATCH,), device=DEVICE)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs), ys)
        loss.backward()
        opt.step()
        loss.item()

    def forward():
        model(xs)

    model.train()
    train = timed(train_step, profile) * BATCH
    model.eval()
    with torch.inference_mode():
        fwd = timed(forward, profile) * BATCH
        with FlopCounterMode(display=False) as counter:
            model(xs)
    flops = counter.get_total_flops() / BATCH
    row = {
        "profile": profile, "arch": arch, "width": width, "input_size": size,
        "train_img_s": train, "forward_img_s": fwd, "forward_flops_per_image": flops,
        "torch_version": torch.__version__, "threads": threads, "device": DEVICE.type,
    }
    print(f"torch {profile:5} {arch:11} width {width:<5} input {size:3}: train {train:8.1f} "
          f"img/s, forward {fwd:8.1f} img/s, {flops / 1e9:.3f} GFLOP/img forward, "
          f"{sum(p.numel() for p in model.parameters())} parameters", file=sys.stderr, flush=True)
    if packed and packed_members(profile, s) >= 2:
        del model, opt
        members = int(s["train"].get("ensemble_members", 15))
        start = time.perf_counter()
        g, rate = bench_packed(profile, arch, s)
        row["packed_members"] = g
        row["packed_train_member_img_s"] = rate
        print(f"torch {profile:5} {arch:11} packed ensemble of {g:2} ({members} in the profile): "
              f"train {rate:8.1f} member-img/s = {rate / train:.2f}x one at a time "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return row


def matmul_gflops() -> float:
    """Best-of-5 GFLOP/s of a 2048³ f32 matmul (for comparison with the Rust bench's peak)."""
    n = 2048
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def member_pairs(packed: nn.Module, single: nn.Module):
    """(packed layer, single layer) for every layer with parameters or buffers, paired by name."""
    for name, pm in packed.named_modules():
        if next(pm.parameters(recurse=False), None) is None:
            continue
        sm = single.get_submodule(name)
        expect = {nn.Conv2d: nn.Conv2d, nn.BatchNorm2d: nn.BatchNorm2d, PackedLinear: nn.Linear,
                  PackedBatchNorm1d: nn.BatchNorm1d}[type(pm)]
        assert type(sm) is expect, (name, type(pm), type(sm))
        yield name, pm, sm


def member_block(pm: nn.Module, name: str, t: torch.Tensor, k: int, g: int) -> torch.Tensor:
    """Member k's block of packed tensor `t` (parameter, buffer or gradient `name` of pm)."""
    if isinstance(pm, PackedLinear):
        return t[k]
    n = t.shape[0] // g  # conv / BatchNorm: member k owns the k-th block of output channels
    return t[k * n:(k + 1) * n]


def self_test():
    """Packed networks (G = 3) against three single networks holding the packed members' blocks,
    for the three archs at the cpu profile's sizes: the same logits per member in eval mode (atol
    1e-4), and in train mode with dropout off (BatchNorm's batch statistics per member), where
    packed_loss must also give each member's block the gradient of its own network."""
    g, b = 3, 8
    s = profile_settings("cpu")
    failed = []
    for arch in ARCHS:
        a = s["train"][arch]
        width, size, p = float(a["width"]), int(a["input_size"]), float(a["drop_rate"])
        torch.manual_seed(1)
        packed = PACKED_NETS[arch](width, size, p, g)
        kaiming(packed)
        with torch.no_grad():  # not the identity BatchNorm / zero biases of a fresh network
            for m in packed.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                elif isinstance(m, (nn.Conv2d, PackedLinear)) and m.bias is not None:
                    m.bias.normal_(0, 0.1)
        singles = [NETS[arch](width, size, p) for _ in range(g)]
        with torch.no_grad():
            for k, single in enumerate(singles):
                for _, pm, sm in member_pairs(packed, single):
                    named = [*pm.named_parameters(recurse=False), *pm.named_buffers(recurse=False)]
                    for name, t in named:
                        if name == "num_batches_tracked":
                            continue
                        block = member_block(pm, name, t, k, g)
                        target = getattr(sm, name)
                        assert block.shape == target.shape, (name, block.shape, target.shape)
                        target.copy_(block)
        xs = torch.rand(b, g, size, size)
        ys = torch.randint(0, NUM_CLASSES, (b, g))

        for net in [packed, *singles]:
            net.eval()
        with torch.no_grad():
            out = packed(xs)
            assert out.shape == (b, g, NUM_CLASSES), out.shape
            eval_err = max((out[:, k] - singles[k](xs[:, k:k + 1])).abs().max().item()
                           for k in range(g))

        for net in [packed, *singles]:
            net.train()
            for m in net.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        out = packed(xs)
        packed_loss(out, ys).backward()
        train_err, grad_err = 0.0, 0.0
        for k, single in enumerate(singles):
            ref = single(xs[:, k:k + 1])
            train_err = max(train_err, (out[:, k] - ref).abs().max().item())
            F.cross_entropy(ref, ys[:, k]).backward()
            # Relative to the member's largest gradient (a bias before BatchNorm has ~0 gradient).
            diff, scale = 0.0, 0.0
            for _, pm, sm in member_pairs(packed, single):
                for name, t in pm.named_parameters(recurse=False):
                    want = getattr(sm, name).grad
                    got = member_block(pm, name, t.grad, k, g)
                    diff = max(diff, (got - want).abs().max().item())
                    scale = max(scale, want.abs().max().item())
            grad_err = max(grad_err, diff / scale)
        ok = eval_err <= 1e-4 and train_err <= 1e-4 and grad_err <= 1e-3
        print(f"self-test {arch:11} G={g} cpu size {size}: eval logits max |diff| {eval_err:.2e}, "
              f"train logits {train_err:.2e}, gradients max relative {grad_err:.2e}: "
              f"{'ok' if ok else 'FAILED'}", file=sys.stderr, flush=True)
        if not ok:
            failed.append(arch)
    if failed:
        sys.exit(f"self-test failed: {', '.join(failed)}")
    print("self-test passed", file=sys.stderr)


def main():
    if sys.argv[1:] == ["--self-test"]:
        torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1))
        self_test()
        return
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: torch_reference.py OUT.json | torch_reference.py --self-test")
    if PACKED_FC not in ("bmm", "einsum", "conv1d"):
        sys.exit(f"FER_BENCH_PACKED_FC={PACKED_FC}: not bmm, einsum or conv1d")
    threads = int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        print(f"torch on {torch.cuda.get_device_name(DEVICE)}, cuDNN "
              f"{torch.backends.cudnn.version()}", file=sys.stderr, flush=True)
    packed = os.environ.get("FER_BENCH_PACKED", "1") != "0"
    # FER_BENCH_ONLY=cpu/densenet121,paper/vgg16 measures only those rows (as the Rust bench).
    only = os.environ.get("FER_BENCH_ONLY")
    wanted = None if not only else {w.strip() for w in only.split(",") if w.strip()}
    out = Path(sys.argv[1])
    start = time.perf_counter()
    rows = [bench(p, arch, profile_settings(p), threads, packed)
            for p in PROFILES for arch in ARCHS if wanted is None or f"{p}/{arch}" in wanted]
    if DEVICE.type == "cpu":
        print(f"torch {torch.__version__}, {threads} threads: 2048³ matmul "
              f"{matmul_gflops():.1f} GFLOP/s; {time.perf_counter() - start:.0f} s in all",
              file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
