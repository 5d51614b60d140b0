"""The one configuration of a run, shared by both backends.

Framework-free on purpose: `train.py` fills it from flags, both `din_torch`
and `din_jax` read it, and it is saved whole as `config.json` in every run
directory, so a run can be rebuilt, and resumed, from that file alone.

Every setting belongs to one group, recorded in config.json as its own
object:
  data       how samples are built from the data folder
  model      the network (`config.model` is what a model module receives)
  optimizer  Adam, weight decay, the mini-batch aware L2
  loop       batches, epochs, early stopping, checkpoints, seed
  placement  where the run computes: mesh, sharding, parameter dtype, device
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from data.errors import ConfigError

# config.init "paper": the embeddings' standard deviation (DeepCTR's init_std).
PAPER_EMBEDDING_STD = 1e-4

# The allowed values of every string field (also the flags' choices in train.py).
CHOICES = {
    "attention_norm": ("sigmoid", "softmax"),
    "dice": ("tutorial", "paper"),
    "init": ("tutorial", "paper"),
    "dtype": ("float32", "bfloat16"),
    "param_dtype": ("float32", "float64"),
    "protocol": ("sequential", "seed", "paper"),
    "split": ("fraction", "leave-last-out"),
    "input": ("auto", "device", "stream"),
}
GROUPS = ("data", "model", "optimizer", "loop", "placement")


def setting(default: Any, group: str) -> Any:
    return dataclasses.field(default=default, metadata={"group": group})


@dataclasses.dataclass(frozen=True)
class DINConfig:
    """Every setting of a run (defaults: the tutorial's), grouped."""

    # Data.
    min_count: int = setting(5, "data")
    # Sequence features of CSV data are cut to max_len ids (0: the longest
    # training sequence, as the tutorial does).
    max_len: int = setting(0, "data")
    # One vocabulary and one embedding table per attention (query, history) pair.
    share_embeddings: bool = setting(False, "data")
    # A dataset file describing CSVs (data/csv_dataset.py); "" = DIR/dataset.toml if present.
    dataset: str = setting("", "data")
    # Raw MovieLens folders; CSV sources ignore these. protocol: "sequential"
    # (data/sequential.py), "seed" (data/seed_protocol.py) or "paper" (data/paper_protocol.py).
    protocol: str = setting("sequential", "data")
    # Raw MovieLens and Amazon: a history keeps the user's latest max_hist items.
    max_hist: int = setting(50, "data")
    holdout_fraction: float = setting(0.1, "data")
    split: str = setting("fraction", "data")  # or "leave-last-out"
    valid_fraction: float = setting(0.1, "data")
    valid_on_test: bool = setting(False, "data")

    # Model.
    embedding_dim: int = setting(16, "model")
    attention_hidden: tuple[int, ...] = setting((16, 8), "model")
    attention_dropout: float = setting(0.1, "model")
    mlp_hidden: tuple[int, ...] = setting((32, 16), "model")
    mlp_dropout: float = setting(0.25, "model")
    bn_eps: float = setting(1e-5, "model")
    dice_eps: float = setting(1e-8, "model")
    bn_momentum: float = setting(0.1, "model")  # torch convention: weight of the NEW batch statistic.
    # The paper's options (README "Beyond the tutorial"); the defaults are the tutorial's.
    attention_norm: str = setting("sigmoid", "model")  # or "softmax": masked softmax over the history
    mask_padding: bool = setting(False, "model")  # max-pooling and attention BatchNorm/Dice statistics skip padding
    dice: str = setting("tutorial", "model")  # or "paper": Dice's BatchNorm without affine parameters
    init: str = setting("tutorial", "model")  # or "paper": embeddings N(0, 1e-4^2), zero Linear biases
    # The computation's dtype ("bfloat16": JAX only); BatchNorm statistics and
    # the loss stay float32.
    dtype: str = setting("float32", "model")

    # Optimizer: torch.optim.Adam, weight decay added to the gradient (coupled).
    learning_rate: float = setting(0.002, "optimizer")
    adam_b1: float = setting(0.9, "optimizer")
    adam_b2: float = setting(0.999, "optimizer")
    adam_eps: float = setting(1e-8, "optimizer")
    weight_decay: float = setting(0.001, "optimizer")
    # Mini-batch aware L2 on embedding tables (paper eq. 4-7); 0 = off. When on,
    # the tables are left out of weight_decay.
    mba_reg: float = setting(0.0, "optimizer")

    # Loop.
    batch_size: int = setting(128, "loop")
    eval_batch_size: int = setting(1024, "loop")
    epochs: int = setting(100, "loop")
    patience: int = setting(5, "loop")
    seed: int = setting(0, "loop")
    checkpoint_every: int = setting(0, "loop")  # optimiser steps between checkpoints; 0 = none
    steps_per_call: int = setting(16, "loop")  # JAX: train steps per jitted call (lax.scan)

    # Placement.
    mesh: str = setting("", "placement")  # JAX: "data=N[,model=M]"; "" = every device on 'data'
    shard_embeddings: bool = setting(False, "placement")  # JAX: tables split over 'model'
    param_dtype: str = setting("float32", "placement")  # parameters and optimiser state
    device: str = setting("", "placement")  # torch: "cpu", "cuda", ...; "" = cuda if available
    # JAX: "device" copies each split to every device once; "stream" gathers each
    # block of batches on the host and sends each device its shard; "auto" streams
    # splits over din_jax.train.RESIDENT_BYTES. Batches, and so results, are the same.
    input: str = setting("auto", "placement")

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} (--{name.replace('_', '-')}) {why}, got {getattr(self, name)!r}")

        for name in ("attention_hidden", "mlp_hidden"):
            sizes = tuple(getattr(self, name))
            object.__setattr__(self, name, sizes)
            if not sizes or any(int(s) <= 0 for s in sizes):
                raise fail(name, "must be a non-empty list of positive sizes")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "float" and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise fail(field.name, "must be a finite number")
        for name in ("embedding_dim", "batch_size", "eval_batch_size", "epochs", "patience", "min_count", "steps_per_call"):
            if getattr(self, name) < 1:
                raise fail(name, "must be >= 1")
        if self.batch_size < 2:
            raise fail("batch_size", "must be >= 2: BatchNorm cannot train on a batch of one")
        for name in ("learning_rate", "adam_eps", "bn_eps", "dice_eps"):
            if getattr(self, name) <= 0:
                raise fail(name, "must be > 0")
        for name in ("attention_dropout", "mlp_dropout", "bn_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise fail(name, "must be in [0, 1)")
        for name in ("adam_b1", "adam_b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise fail(name, "must be in [0, 1)")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise fail(name, f"must be one of {allowed}")
        for name in ("mba_reg", "weight_decay", "max_len", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise fail(name, "must be >= 0")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise fail("holdout_fraction", "must be in (0, 0.5)")
        if self.max_hist < 1:
            raise fail("max_hist", "must be >= 1")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise fail("valid_fraction", "must be in [0, 1)")

    def replace(self, **changes: Any) -> "DINConfig":
        return dataclasses.replace(self, **changes)

    @property
    def model(self) -> "ModelConfig":
        """The model group: what a model module (torch or Flax) receives."""
        return ModelConfig(**self.group("model"))

    def group(self, name: str) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["group"] == name}

    def to_json(self) -> str:
        return json.dumps({name: self.group(name) for name in GROUPS}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "config.json") -> "DINConfig":
        """Reads to_json's grouped layout (or the flat one of earlier runs)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{source}: not valid JSON ({error}); the file is damaged") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object of settings")
        if set(raw) <= set(GROUPS) and all(isinstance(v, dict) for v in raw.values()):
            raw = {name: value for group in raw.values() for name, value in group.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown settings {unknown}")
        try:
            return cls(**raw)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


ModelConfig = dataclasses.make_dataclass(
    "ModelConfig",
    [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(DINConfig) if f.metadata["group"] == "model"],
    frozen=True,
    namespace={"__doc__": "The model group of DINConfig: the hyper-parameters a DIN module is built from."},
)
