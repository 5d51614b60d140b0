"""The backend registry, and the interfaces each backend implements.

Each backend is a package (`din_jax`, `din_torch`) exposing the same names:
`Backend` (the shared loop's interface below), `Predictor` (eval-mode
scoring and export, below), `check(config)` (refuses, in one line, settings
it cannot run), `prepare(config, schema, train)` (the config with the
settings it derives from the training split), `initialize_distributed()`
(joins a multi-host job, or refuses) and `inference.variable_shapes(schema,
config)` (its weights' names and shapes, for converting another backend's).
Every command asks this registry; only the framework asked for is imported.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Protocol

import numpy as np

from core import schedule
from core.config import DINConfig
from core.errors import ConfigError
from data.schema import LABEL, FeatureSchema
from training.regularization import mba_scales

Arrays = dict[str, np.ndarray]
BACKENDS = ("jax", "torch")
# Export formats -> the backend whose Predictor writes them (Predictor.write).
EXPORTS = {"stablehlo": "jax", "torch": "torch", "onnx": "torch"}


class Backend(Protocol):
    name: str
    describe: str  # Framework, version and device, for the log.
    primary: bool  # Writes the run directory (one process of a multi-host job).

    def train_batches(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        """One optimiser step per entry of `batches` (each holds row indices of
        `data`), in order; calls `progress(samples)` as samples are done; returns
        each batch's mean training loss [len(batches)]."""

    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        """Eval-mode logits [N] for every row of `data`, in order."""

    def attention(self, data: Arrays) -> dict[str, np.ndarray]:
        """Eval-mode attention weights {group: [N, T]} of every row of `data` (a
        small probe, one batch); {} where the model has no attention unit."""

    def attention_norms(self) -> dict[str, float]:
        """The L2 norm of each attention unit's dense kernels {group: norm}."""

    def weights(self) -> dict[str, np.ndarray]:
        """A copy of every parameter and buffer, by the backend's own names."""

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replaces every parameter and buffer; an unknown or missing name is an error."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """A copy of Adam's state by parameter name: 'mu/<name>', 'nu/<name>' (the
        names of `weights`) and 'count' (its steps); {} before the first step."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Replaces Adam's moments and step count with what optimizer_state gave."""

    def save_state(self, path: str) -> None:
        """Writes the full training state (weights, optimiser state, step, RNG) into
        the new directory `path`."""

    def load_state(self, path: str) -> None:
        """Restores what save_state wrote, so training continues bit for bit."""


class Predictor(Protocol):
    """An eval-mode model for scoring: Predictor(schema, config, variables),
    variables by the backend's own names (inference/convert.py converts)."""

    artifacts: dict[str, str]  # the export formats it writes (EXPORTS) -> their artifact file

    def __call__(self, batch: Arrays) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(logits [B], {attention group: weights [B, T]}) of a batch of encoded inputs."""

    def write(self, fmt: str, folder: str) -> dict:
        """The export `fmt` (probability = sigmoid(logits), inputs positional in
        schema.inputs order, the batch dimension dynamic) into `folder`; returns
        what the artifact's manifest adds."""


def backend_module(name: str) -> ModuleType:
    """The backend package `din_<name>`, imported on first use."""
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name}: expected one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"din_{name}")


def check(name: str, config: DINConfig) -> None:
    """Refuses, in one line, settings the backend cannot run."""
    backend_module(name).check(config)


def derived(name: str, config: DINConfig, schema: FeatureSchema, train: Arrays | None) -> DINConfig:
    """The settings the training split decides where the config leaves them to
    it (0): the learning-rate decay's length, the share of history positions
    the backend computes (its `prepare`). A concrete config comes back as it is."""
    config = schedule.resolve(config, None if train is None else len(train[LABEL]))
    return backend_module(name).prepare(config, schema, train)


def make_backend(name: str, schema: FeatureSchema, config: DINConfig, train: Arrays | None = None) -> Backend:
    """The backend `name` for this run; the config says where it computes (mesh,
    sharding, parameter dtype, device). `train`, the encoded training split, is
    needed with config.mba_reg (its id counts scale the regulariser) and with
    a learning-rate decay over the whole run (its rows count the steps)."""
    module = backend_module(name)
    config = derived(name, config, schema, train)
    scales = None
    if config.mba_reg > 0:
        if train is None:
            raise ValueError("mba_reg needs the training split to count id occurrences")
        scales = mba_scales(schema, train, config.mba_reg)
    return module.Backend(schema, config, mba_scales=scales)
