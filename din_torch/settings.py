"""What the torch backend runs: the settings it refuses (`check`: JAX's
placement and speed settings, devices this build lacks) and those it
derives from the training split (`prepare`). Mirrors din_jax/settings.py."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from core.config import DINConfig, flag
from core.errors import ConfigError
from data.schema import FeatureSchema


def check(config: DINConfig) -> None:
    """Settings this backend cannot run, refused before anything is built;
    with the JAX backend's speed settings, which torch would ignore, refused
    too when a user asks for a torch run with them (train.py)."""
    jax_only = [name for name in ("steps_per_call", "attention_input") if getattr(config, name) != getattr(DINConfig(), name)]
    jax_only += ["history_share"] if config.history_share not in (0.0, 1.0) else []  # torch computes every position
    if jax_only:
        raise ConfigError(f"{', '.join(flag(name) for name in jax_only)}: for --backend jax (torch runs every history "
                          "position, one step per call)")
    check_computable(config)


def check_computable(config: DINConfig) -> None:
    """What torch cannot compute or place: a mesh, sharded tables, JAX's input
    paths, any dtype but float32 (a torch backend built from a JAX run's
    config, as the benches do, ignores JAX's speed settings)."""
    jax_only = [name for name in ("mesh", "shard_embeddings", "input") if getattr(config, name) != getattr(DINConfig(), name)]
    if jax_only:
        raise ConfigError(f"{', '.join(flag(name) for name in jax_only)}: for --backend jax (torch runs one device)")
    for name in ("dtype", "param_dtype"):
        if getattr(config, name) != "float32":
            raise ConfigError(f"{flag(name)} {getattr(config, name)}: the torch backend trains in "
                              "float32 (bfloat16 and float64 are JAX's)")
    check_device(config.device)


def check_device(name: str) -> None:
    """--device: a device this torch build has ('' picks cuda when available)."""
    if not name:
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ConfigError(f"--device {name}: this torch build sees {torch.cuda.device_count()} CUDA device(s) (torch "
                          f"{torch.__version__}); use --device cpu, or leave --device out to pick one")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: this machine has no MPS device; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: the torch backend runs on cpu, cuda or mps")


def prepare(config: DINConfig, schema: FeatureSchema, train: Mapping[str, np.ndarray] | None) -> DINConfig:
    """torch computes every history position: `history_share` 1."""
    return config if config.history_share else config.replace(history_share=1.0)


def initialize_distributed() -> None:
    raise ConfigError("--distributed is for a multi-host backend (jax), not torch")
