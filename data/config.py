"""The one home of every hyper-parameter, shared by both backends.

Framework-free on purpose: `train.py` fills it from flags, both `din_torch`
and `din_jax` read it, and it is saved as `config.json` in every run
directory so a run can be rebuilt exactly.
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
    "protocol": ("sequential", "seed"),
    "split": ("fraction", "leave-last-out"),
}


@dataclasses.dataclass(frozen=True)
class DINConfig:
    """DIN model and training hyper-parameters (defaults: the tutorial's)."""

    # Model.
    embedding_dim: int = 16
    attention_hidden: tuple[int, ...] = (16, 8)
    attention_dropout: float = 0.1
    mlp_hidden: tuple[int, ...] = (32, 16)
    mlp_dropout: float = 0.25
    bn_eps: float = 1e-5
    dice_eps: float = 1e-8
    bn_momentum: float = 0.1  # torch convention: weight of the NEW batch statistic.
    # The paper's options (README "Beyond the tutorial"); the defaults are the tutorial's.
    attention_norm: str = "sigmoid"  # or "softmax": masked softmax over the history
    mask_padding: bool = False  # max-pooling and attention BatchNorm/Dice statistics skip padding
    dice: str = "tutorial"  # or "paper": Dice's BatchNorm without affine parameters
    init: str = "tutorial"  # or "paper": embeddings N(0, 1e-4^2), zero Linear biases
    # Activations' dtype ("bfloat16": JAX only); parameters, optimiser state,
    # BatchNorm statistics and the loss stay float32.
    dtype: str = "float32"

    # Optimiser: torch.optim.Adam, weight decay added to the gradient (coupled).
    learning_rate: float = 0.002
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.001
    # Mini-batch aware L2 on embedding tables (paper eq. 4-7); 0 = off. When on,
    # the tables are left out of weight_decay.
    mba_reg: float = 0.0

    # Loop.
    batch_size: int = 128
    eval_batch_size: int = 1024
    epochs: int = 100
    patience: int = 5
    seed: int = 0
    valid_fraction: float = 0.1
    valid_on_test: bool = False

    # Preprocessing.
    min_count: int = 5
    # Sequence features of CSV data are cut to max_len ids (0: the longest
    # training sequence, as the tutorial does).
    max_len: int = 0
    # One vocabulary and one embedding table per attention (query, history) pair.
    share_embeddings: bool = False
    # Raw GroupLens folders; the tutorial's CSVs ignore these. protocol:
    # "sequential" (data/sequential.py) or "seed" (data/seed_protocol.py).
    protocol: str = "sequential"
    max_hist: int = 50
    holdout_fraction: float = 0.1
    split: str = "fraction"  # or "leave-last-out"

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
        for name in ("embedding_dim", "batch_size", "eval_batch_size", "epochs", "patience", "min_count"):
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
        for name in ("mba_reg", "weight_decay", "max_len"):
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

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "config.json") -> "DINConfig":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{source}: not valid JSON ({error}); the file is damaged") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown settings {unknown}")
        try:
            return cls(**raw)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
