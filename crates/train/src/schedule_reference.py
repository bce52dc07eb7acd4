#!/usr/bin/env python3
"""Independent reference values for the learning-rate schedules of `optim.rs`.

Run `python3 crates/train/src/schedule_reference.py`; the numbers it prints are the literals of
`optim::tests::schedules_match_reference_values`. Written from the definition in the module doc
of `optim.rs`, not from the Rust code:

    base(t)   = learning_rate / (1 + lr_decay * t)
    T         = epochs * steps_per_epoch
    W         = round(warmup_epochs * steps_per_epoch), halves away from zero;
                onecycle with warmup_epochs = 0: round(0.3 * T), halves up
    t < W     : factor = (t + 1) / W
    t >= W    : u = min(1, (t - W) / max(1, T - W));
                constant 1, linear 1 - u, cosine and onecycle (1 + cos(pi * u)) / 2
    lr(t)     = base(t) * factor(t)
"""

from fractions import Fraction
import math


def round_half_up(x: Fraction) -> int:
    """Nearest integer, halves up (x >= 0), exactly."""
    return math.floor(x + Fraction(1, 2))


def lr(schedule, learning_rate, lr_decay, epochs, warmup_epochs, steps_per_epoch, t):
    total = epochs * steps_per_epoch
    if schedule == "onecycle" and warmup_epochs == 0:
        warm = round_half_up(Fraction(3, 10) * total)
    else:
        warm = round_half_up(Fraction(warmup_epochs) * steps_per_epoch)
    base = learning_rate / (1 + lr_decay * t)
    if t < warm:
        factor = (t + 1) / warm
    else:
        u = min(1.0, (t - warm) / max(1, total - warm))
        factor = {
            "constant": 1.0,
            "linear": 1.0 - u,
            "cosine": 0.5 * (1.0 + math.cos(math.pi * u)),
            "onecycle": 0.5 * (1.0 + math.cos(math.pi * u)),
        }[schedule]
    return base * factor


# (schedule, learning_rate, lr_decay, epochs, warmup_epochs, steps_per_epoch, steps)
CASES = [
    ("constant", 0.1, 0.0, 2, 0.0, 5, [0, 5, 9]),
    ("constant", 0.1, 0.0, 2, 0.5, 5, [0, 1, 2, 3, 9]),
    ("linear", 0.1, 0.0, 2, 0.0, 5, [0, 1, 5, 9, 10, 12]),
    ("linear", 0.1, 0.0, 2, 0.4, 5, [0, 1, 2, 6, 9]),
    ("cosine", 0.1, 0.0, 2, 0.0, 5, [0, 1, 5, 9, 10]),
    ("cosine", 0.1, 0.0, 2, 0.4, 5, [0, 1, 2, 6, 9]),
    ("onecycle", 0.1, 0.0, 2, 0.0, 5, [0, 1, 2, 3, 6, 9]),
    ("onecycle", 0.1, 0.0, 1, 0.0, 5, [0, 1, 2, 4]),
    ("onecycle", 0.1, 0.0, 2, 1.0, 5, [0, 4, 5, 9]),
    ("linear", 0.1, 0.1, 2, 0.0, 5, [0, 1, 5, 9]),
    ("cosine", 0.01, 1e-4, 3, 0.5, 4, [0, 1, 2, 7, 11]),
]

if __name__ == "__main__":
    for schedule, rate, decay, epochs, warmup, spe, steps in CASES:
        values = [lr(schedule, rate, decay, epochs, warmup, spe, t) for t in steps]
        pairs = ", ".join(f"({t}, {v!r})" for t, v in zip(steps, values))
        print(f'("{schedule}", {rate!r}, {decay!r}, {epochs}, {warmup!r}, {spe}, &[{pairs}]),')
