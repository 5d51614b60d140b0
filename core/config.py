"""The one configuration of a run, shared by both backends.

Framework-free on purpose: `train.py` builds its flags from it (each field's
type, default, help and choices), both `din_torch` and `din_jax` read it, and
it is saved whole as `config.json` in every run directory, so a run can be
rebuilt, and resumed, from that file alone.

Every setting belongs to one group, recorded in config.json as its own
object:
  data       how samples are built from the data folder
  model      the network (`config.model`, a ModelConfig, is what a model module receives)
  optimizer  Adam, weight decay, the mini-batch aware L2
  loop       batches, epochs, early stopping, checkpoints, seed
  placement  where the run computes: mesh, sharding, parameter dtype, device
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from core.errors import ConfigError

# config.init "paper": the embeddings' standard deviation (DeepCTR's init_std).
PAPER_EMBEDDING_STD = 1e-4

GROUPS = ("data", "model", "optimizer", "loop", "placement")

# Named starting points (--preset NAME; flags given beside it override it).
# "paper": the DIN paper's sizes, its attention MLP 80-40 and final MLP 200-80
# (the authors' code, github zhougr1993/DeepInterestNetwork) and its
# embedding width of 12 (the paper's section 6.2); raw MovieLens in the
# sequential protocol trains with them unless told otherwise (the quality
# study in docs/results.md chose them there: Source.defaults).
# "tutorial": the tutorial's sizes, DINConfig's defaults everywhere else.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"embedding_dim": 12, "attention_hidden": (80, 40), "mlp_hidden": (200, 80)},
    "tutorial": {"embedding_dim": 16, "attention_hidden": (16, 8), "mlp_hidden": (32, 16)},
}


def flag(name: str) -> str:
    """A setting's command-line flag: learning_rate -> --learning-rate."""
    return f"--{name.replace('_', '-')}"


def setting(default: Any, group: str, help: str, *, choices: tuple[str, ...] | None = None,
            metavar: str | None = None, on_resume: bool = False) -> Any:
    """A DINConfig field. `help`, `choices` and `metavar` make its train.py flag
    (--field-name); `on_resume`: a resumed run may change it (where the run
    computes, not what)."""
    metadata = {"group": group, "help": help, "choices": choices, "metavar": metavar, "on_resume": on_resume}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class DINConfig:
    """Every setting of a run (defaults: the tutorial's), grouped."""

    # Data.
    min_count: int = setting(5, "data", "ids seen fewer times in training share the 'unknown' id")
    max_len: int = setting(0, "data", "cut the CSV sources' sequences to N ids (0: the longest training sequence)")
    share_embeddings: bool = setting(
        False, "data", "one vocabulary and embedding table for each attention pair's query and history (the paper's design)")
    dataset: str = setting(
        "", "data", "a dataset file (TOML) describing the CSVs in --data (default: DIR/dataset.toml when present)")
    protocol: str = setting(
        "sequential", "data", "how raw MovieLens becomes samples: sequential, seed (the tutorial's) or paper (the DIN paper's)",
        choices=("sequential", "seed", "paper"))
    max_hist: int = setting(50, "data", "raw MovieLens and Amazon: a history keeps the user's latest N items")
    # None: the protocol's choice (on for raw MovieLens in the sequential
    # protocol, which the quality study in docs/model.md chose them for; off
    # where a source has no such feature); True asks for it (refused where
    # there is none), False turns it off.
    low_rated_history: bool | None = setting(
        None, "data", "raw MovieLens, sequential protocol: a second attention group over the movies the user rated "
        "below 4 before (the latest --max-hist)")
    user_feature: bool | None = setting(
        None, "data", "raw MovieLens, sequential protocol: the user id as a feature (test users are seen in "
        "training; ids in fewer than --min-count training samples share the unknown id)")
    holdout_fraction: float = setting(0.1, "data", "raw MovieLens: the share of samples held out for test (of each "
                                      "user's, or with --split time of all), and as much again for validation")
    split: str = setting("fraction", "data", "raw MovieLens: hold out each user's latest fraction, only the last "
                         "sample, or (time) the latest fraction of all samples, one cut time for every user",
                         choices=("fraction", "leave-last-out", "time"))
    valid_fraction: float = setting(0.1, "data", "the share of training users held out for validation (0: none)")
    valid_on_test: bool = setting(False, "data", "early-stop on the test set, as the tutorial did (for comparison only)")

    # Model.
    embedding_dim: int = setting(16, "model", "width of every embedding")
    attention_hidden: tuple[int, ...] = setting((16, 8), "model", "the attention MLP's hidden sizes", metavar="N")
    attention_dropout: float = setting(0.1, "model", "dropout after each attention MLP activation")
    mlp_hidden: tuple[int, ...] = setting((32, 16), "model", "the final MLP's hidden sizes", metavar="N")
    mlp_dropout: float = setting(0.25, "model", "dropout after each final MLP activation")
    bn_eps: float = setting(1e-5, "model", "BatchNorm's epsilon")
    dice_eps: float = setting(1e-8, "model", "Dice's epsilon")
    bn_momentum: float = setting(0.1, "model", "weight of the new batch statistic in BatchNorm's running statistics "
                                 "(torch's convention)")
    attention_norm: str = setting(
        "sigmoid", "model", "softmax: masked softmax over the history (the paper) instead of the tutorial's scaled sigmoid",
        choices=("sigmoid", "softmax"))
    attention_input: str = setting(
        "split", "model", "JAX's attention first layer: split (a query term once per example plus key terms per position, "
        "exact, no [T, 4D] input) or concat (Dense on [q, k, q - k, q * k], as the torch reference computes it)",
        choices=("split", "concat"))
    history_share: float = setting(
        0.0, "model", "jax: the attention's rows are provisioned for this share of a batch's history positions "
        "(real ones packed, the padding one row per example; a batch with more takes every position, with the "
        "same result); 0: from the training split's lengths, or 1 (every position) where the attention MLP is "
        "too narrow for packing to pay (din_jax/packing.py)")
    pooling: str = setting(
        "attention", "model", "how a history becomes the interest vector: attention (DIN), or the mean or sum of its "
        "embeddings (the paper's BaseModel)", choices=("attention", "mean", "sum"))
    mask_padding: bool = setting(False, "model", "max-pooling and the attention's BatchNorm/Dice statistics ignore "
                                 "padded positions")
    dice: str = setting("tutorial", "model", "paper: Dice's BatchNorm has no affine parameters",
                        choices=("tutorial", "paper"))
    init: str = setting("tutorial", "model",
                        "paper: embeddings N(0, 1e-4^2) and zero Linear biases instead of the tutorial's N(0, 1)",
                        choices=("tutorial", "paper"))
    dtype: str = setting("float32", "model", "the computation's dtype; bfloat16 (JAX) keeps parameters, optimiser "
                         "state, BatchNorm statistics and the loss in float32", choices=("float32", "bfloat16"))

    # Optimizer: Adam, with weight decay per parameter group (docs/model.md, "Regularisation"):
    # embeddings (the tables), attention (the attention units), mlp (the final MLP
    # and output layer). Coupled: the decay is added to the gradient before Adam's
    # moments (torch.optim.Adam's weight_decay); decoupled: the weights shrink by
    # rate * decay each step beside Adam's update (AdamW).
    learning_rate: float = setting(0.002, "optimizer", "Adam's learning rate")
    adam_b1: float = setting(0.9, "optimizer", "Adam's beta1")
    adam_b2: float = setting(0.999, "optimizer", "Adam's beta2")
    adam_eps: float = setting(1e-8, "optimizer", "Adam's epsilon")
    weight_decay_form: str = setting(
        "coupled", "optimizer", "coupled: weight decay added to the gradient before Adam (torch.optim.Adam's); "
        "decoupled: weights shrink by rate x decay beside Adam's step (AdamW)", choices=("coupled", "decoupled"))
    embedding_weight_decay: float = setting(
        0.001, "optimizer", "weight decay of the embedding tables (none with --mba-reg, which regularises them instead)")
    attention_weight_decay: float = setting(
        0.0, "optimizer", "weight decay of the attention units (coupled decay walks their weights to zero where their "
        "gradient is small: the attention collapses to pooling)")
    mlp_weight_decay: float = setting(0.001, "optimizer", "weight decay of the final MLP and the output layer")
    mba_reg: float = setting(0.0, "optimizer", "lambda of the paper's mini-batch aware L2 on embedding tables (eq. 4-7; "
                             "the tables then get no weight decay); 0 = off")
    lr_schedule: str = setting("constant", "optimizer", "the learning rate after warm-up: constant, or a cosine or "
                               "linear decay to 0 over --decay-steps", choices=("constant", "cosine", "linear"))
    warmup_steps: int = setting(0, "optimizer", "a linear warm-up from 0 to --learning-rate over the first N steps")
    decay_steps: int = setting(0, "optimizer", "the decay's length in steps (0: every step of --epochs after the "
                               "warm-up)")

    # Loop.
    batch_size: int = setting(128, "loop", "training batch size")
    eval_batch_size: int = setting(1024, "loop", "evaluation batch size")
    epochs: int = setting(100, "loop", "at most this many epochs")
    patience: int = setting(5, "loop", "stop after this many epochs without a validation AUC gain")
    seed: int = setting(0, "loop", "initialisation, shuffling, dropout (and the seeded builds' splits)")
    checkpoint_every: int = setting(0, "loop", "write the full training state every STEPS optimiser steps into "
                                    "RUN_DIR/checkpoints (0: never)", metavar="STEPS")
    steps_per_call: int = setting(16, "loop", "jax: optimiser steps per jitted call (lax.scan)")

    # Placement.
    mesh: str = setting("", "placement", "jax device mesh data=N[,model=M] (default: every device on data); batches "
                        "split over data", on_resume=True)
    shard_embeddings: bool = setting(False, "placement", "jax: split embedding tables along the vocabulary over model")
    param_dtype: str = setting("float32", "placement", "parameters' and optimiser state's dtype (float64: jax with "
                               "JAX_ENABLE_X64=1)", choices=("float32", "float64"))
    device: str = setting("", "placement", "torch device, e.g. cpu or cuda (default: cuda when available)", on_resume=True)
    # Batches, and so results, are the same either way.
    input: str = setting(
        "auto", "placement", "jax: device copies each split to every device once; stream gathers each block of batches "
        "on the host (memory-mapped cache) and sends each device only its shard; auto streams splits over 1 GB",
        choices=("auto", "device", "stream"), on_resume=True)

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name} ({flag(name)}) {why}, got {getattr(self, name)!r}")

        for name in ("attention_hidden", "mlp_hidden"):
            sizes = tuple(getattr(self, name))
            object.__setattr__(self, name, sizes)
            if not sizes or any(int(s) <= 0 for s in sizes):
                raise fail(name, "must be a non-empty list of positive sizes")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "float" and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise fail(field.name, "must be a finite number")
            if field.metadata["choices"] and value not in field.metadata["choices"]:
                raise fail(field.name, f"must be one of {field.metadata['choices']}")
        for name in ("embedding_dim", "batch_size", "eval_batch_size", "epochs", "patience", "min_count", "steps_per_call"):
            if getattr(self, name) < 1:
                raise fail(name, "must be >= 1")
        if self.batch_size < 2:
            raise fail("batch_size", "must be >= 2: BatchNorm cannot train on a batch of one")
        for name in ("learning_rate", "adam_eps", "bn_eps", "dice_eps"):
            if getattr(self, name) <= 0:
                raise fail(name, "must be > 0")
        for name in ("attention_dropout", "mlp_dropout", "bn_momentum", "adam_b1", "adam_b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise fail(name, "must be in [0, 1)")
        for name in ("mba_reg", "embedding_weight_decay", "attention_weight_decay", "mlp_weight_decay", "max_len",
                     "checkpoint_every", "warmup_steps", "decay_steps"):
            if getattr(self, name) < 0:
                raise fail(name, "must be >= 0")
        if self.decay_steps and self.lr_schedule == "constant":
            raise fail("decay_steps", "decays nothing with --lr-schedule constant: add --lr-schedule cosine or linear")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise fail("holdout_fraction", "must be in (0, 0.5)")
        if self.max_hist < 1:
            raise fail("max_hist", "must be >= 1")
        if not 0 <= self.seed < 2**32:  # numpy's and torch's seeds: an unsigned 32-bit integer
            raise fail("seed", "must be in [0, 2**32)")
        if not 0.0 <= self.history_share <= 1.0:
            raise fail("history_share", "must be in [0, 1]")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise fail("valid_fraction", "must be in [0, 1)")

    def weight_decays(self) -> dict[str, float]:
        """Each parameter group's weight decay (DECAY_GROUPS); with mba_reg the
        tables get none: the mini-batch aware L2 regularises them instead."""
        decays = {group: getattr(self, f"{group}_weight_decay") for group in DECAY_GROUPS}
        return decays | ({"embedding": 0.0} if self.mba_reg > 0 else {})

    def replace(self, **changes: Any) -> "DINConfig":
        return dataclasses.replace(self, **changes)

    @property
    def model(self) -> "ModelConfig":
        """The model group: what a model module (torch or Flax) receives."""
        return ModelConfig(**self.group("model"))

    def group(self, name: str) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["group"] == name}

    @classmethod
    def group_of(cls, name: str) -> str:
        """The group a setting belongs to."""
        return next(f.metadata["group"] for f in dataclasses.fields(cls) if f.name == name)

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
        raw.pop(CONTINUED_FROM, None)  # a record beside the settings, not one
        if set(raw) <= set(GROUPS) and all(isinstance(v, dict) for v in raw.values()):
            raw = {name: value for group in raw.values() for name, value in group.items()}
        if "weight_decay" in raw:  # one rate for every parameter, before the groups existed
            rate = raw.pop("weight_decay")
            raw = {**{f"{group}_weight_decay": rate for group in DECAY_GROUPS}, **raw}
        raw = {**MEANING_WHEN_ABSENT, **raw}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown settings {unknown}")
        try:
            return cls(**raw)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


# config.json's record of the run a continued run started from (train.py
# --continue-from): its path, weights' SHA-256, timeline and what was trained on.
CONTINUED_FROM = "continued_from"


# What a config.json written before a setting existed meant by its absence
# (where the setting's default is not that).
MEANING_WHEN_ABSENT = {"low_rated_history": False, "user_feature": False, "weight_decay_form": "coupled",
                       "pooling": "attention"}

# The parameter groups that each have a weight decay (`{group}_weight_decay`).
DECAY_GROUPS = ("embedding", "attention", "mlp")

# Settings a resumed run may change: where it computes, not what.
CHANGE_ON_RESUME = frozenset(f.name for f in dataclasses.fields(DINConfig) if f.metadata["on_resume"])


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model group of DINConfig: the hyper-parameters a DIN module is built
    from (the defaults live in DINConfig; tests/test_config.py checks that the
    two name the same fields)."""

    embedding_dim: int
    attention_hidden: tuple[int, ...]
    attention_dropout: float
    mlp_hidden: tuple[int, ...]
    mlp_dropout: float
    bn_eps: float
    dice_eps: float
    bn_momentum: float
    attention_norm: str
    attention_input: str
    history_share: float
    pooling: str
    mask_padding: bool
    dice: str
    init: str
    dtype: str
