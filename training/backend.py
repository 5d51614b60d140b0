"""The small interface each backend implements for the shared loop."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from data.errors import ConfigError
from data.regularization import mba_scales

Arrays = dict[str, np.ndarray]


class Backend(Protocol):
    name: str
    describe: str  # Framework, version and device, for the log.
    primary: bool  # Writes the run directory (one process of a multi-host job).

    def train_epoch(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        """Trains on `data` rows batch by batch (each entry of `batches` holds row
        indices); calls `progress(samples)` as samples are done; returns each
        batch's mean training loss [len(batches)]."""

    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        """Eval-mode logits [N] for every row of `data`, in order."""

    def weights(self) -> dict[str, np.ndarray]:
        """A copy of every parameter and buffer, by the backend's own names."""

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replaces every parameter and buffer; an unknown or missing name is an error."""

    def save_state(self, path: str) -> None:
        """Writes the full training state (weights, optimiser state, step, RNG) into
        the new directory `path`."""

    def load_state(self, path: str) -> None:
        """Restores what save_state wrote, so training continues bit for bit."""


def make_backend(name: str, schema, config, train: Arrays | None = None) -> Backend:
    """Imports only the framework that is asked for; the config says where it
    computes (mesh, sharding, parameter dtype, device). `train`, the encoded
    training split, is needed with config.mba_reg (its id counts scale the
    regulariser)."""
    scales = None
    if config.mba_reg > 0:
        if train is None:
            raise ValueError("mba_reg needs the training split to count id occurrences")
        scales = mba_scales(schema, train, config.mba_reg)
    if name == "torch":
        from din_torch.train import TorchBackend

        return TorchBackend(schema, config, mba_scales=scales)
    if name == "jax":
        from din_jax.train import JaxBackend, enable_compilation_cache

        enable_compilation_cache()
        return JaxBackend(schema, config, mba_scales=scales)
    raise ConfigError(f"unknown backend {name!r}: expected 'jax' or 'torch'")
