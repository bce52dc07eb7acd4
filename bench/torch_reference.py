#!/usr/bin/env python3
"""PyTorch CPU reference for `just bench`: training and inference speed of the three ferbayes
networks, layer for layer as crates/models/src/{alexnet,vgg,densenet,layers,config}.rs build
them, at the (width, input_size) of the `cpu` and `paper` profiles of pipeline.toml.

Usage: torch_reference.py OUT.json

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

Writes a JSON list of rows {profile, arch, width, input_size, train_img_s, forward_img_s,
forward_flops_per_image, torch_version, threads}; progress goes to stderr.
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


def timed(step, profile: str) -> float:
    """Steps per second of `step`: the best of WINDOWS windows after warming up (TIMING)."""
    warm, min_s, min_steps = TIMING[profile]
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


def bench(profile: str, arch: str, s: dict, threads: int) -> dict:
    a = s["train"][arch]
    width, size = float(a["width"]), int(a["input_size"])
    torch.manual_seed(s["seed"])
    model = NETS[arch](width, size, float(a["drop_rate"]))
    kaiming(model)
    if a["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=a["learning_rate"], eps=1e-7,
                               weight_decay=a["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a["learning_rate"], momentum=a["momentum"],
                              weight_decay=a["weight_decay"])
    xs = torch.rand(BATCH, 1, size, size)
    ys = torch.randint(0, NUM_CLASSES, (BATCH,))

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
        "torch_version": torch.__version__, "threads": threads,
    }
    print(f"torch {profile:5} {arch:11} width {width:<5} input {size:3}: train {train:8.1f} "
          f"img/s, forward {fwd:8.1f} img/s, {flops / 1e9:.3f} GFLOP/img forward, "
          f"{sum(p.numel() for p in model.parameters())} parameters", file=sys.stderr, flush=True)
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


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_reference.py OUT.json")
    threads = int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    out = Path(sys.argv[1])
    start = time.perf_counter()
    rows = [bench(p, arch, profile_settings(p), threads) for p in PROFILES for arch in ARCHS]
    print(f"torch {torch.__version__}, {threads} threads: 2048³ matmul {matmul_gflops():.1f} "
          f"GFLOP/s; {time.perf_counter() - start:.0f} s in all", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
