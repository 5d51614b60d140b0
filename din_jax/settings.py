"""What the JAX backend runs: the settings it refuses (`check`), those it
derives from the training split (`prepare`), and where it keeps its
compilations. Mirrors din_torch/settings.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import jax
import numpy as np

from core.config import DINConfig
from core.errors import ConfigError
from data.schema import FeatureSchema
from din_jax import packing


def check(config: DINConfig) -> None:
    """Settings this backend cannot run, refused before anything is built."""
    if config.param_dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("--param-dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1")
    if config.device:
        raise ConfigError(f"--device {config.device}: for --backend torch; JAX computes on its platform's devices "
                          "(JAX_PLATFORMS=cpu|cuda|tpu chooses the platform, --mesh lays them out)")


def prepare(config: DINConfig, schema: FeatureSchema, train: Mapping[str, np.ndarray] | None) -> DINConfig:
    """The settings this backend derives from the training split: the share of
    history positions the packed attention computes (din_jax/packing.py)."""
    if train is None or config.history_share:
        return config
    config = packing.resolve(config, schema, train)
    logging.getLogger("din").info(
        "attention rows for %.1f%% of each batch's history positions (--history-share %g: %s)",
        100 * config.history_share, config.history_share,
        "from the training split's lengths" if packing.worth_packing(config, schema) else "every position, packed rows do not pay at these widths")
    return config


def enable_compilation_cache(path: str | None = None) -> str:
    """Persists XLA compilations on disk, so a second run of the same shapes
    starts at once (a DIN step takes seconds to compile on a small CPU)."""
    path = path or os.environ.get("DIN_XLA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "din-jax", "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    return path
