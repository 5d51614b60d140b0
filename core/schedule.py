"""The learning-rate schedule both backends follow: a linear warm-up from 0
over `warmup_steps`, then constant, or a cosine or linear decay to 0 over
`decay_steps` (optax's warmup and decay schedules; din_torch mirrors them
with `factor`, din_jax builds them from optax, the parity suite compares the
two step by step)."""

from __future__ import annotations

import math
from typing import Callable

from core.config import DINConfig


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches of an epoch (data.batches.epoch_batches: a last batch of one row is dropped)."""
    full, rest = divmod(n_train, batch_size)
    return full + (rest > 1)


def resolve(config: DINConfig, n_train: int | None) -> DINConfig:
    """decay_steps 0 -> every step of the run after the warm-up (`--epochs` epochs of
    `n_train` rows), so that a decay ends at the last epoch's last step."""
    if config.lr_schedule == "constant" or config.decay_steps:
        return config
    if n_train is None:
        raise ValueError("a decay over the whole run needs the training split to count its steps")
    total = config.epochs * steps_per_epoch(n_train, config.batch_size)
    return config.replace(decay_steps=max(total - config.warmup_steps, 1))


def scheduled(config: DINConfig) -> bool:
    return config.lr_schedule != "constant" or config.warmup_steps > 0


def factor(config: DINConfig) -> Callable[[int], float]:
    """step (0 for the first update) -> the multiple of config.learning_rate it uses."""
    warmup, decay, shape = config.warmup_steps, max(config.decay_steps, 1), config.lr_schedule

    def at(step: int) -> float:
        if step < warmup:
            return step / warmup
        t = min(step - warmup, decay) / decay
        if shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0 - t if shape == "linear" else 1.0

    return at
