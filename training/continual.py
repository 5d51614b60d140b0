"""A finished run continued on newer data (`train.py --continue-from RUN`).

The continued run takes RUN's data and model settings (its training settings
may change), RUN's best weights and the Adam state of that epoch, and RUN's
encoders grown, never renumbered: every id RUN knew keeps its row, ids that
reach min_count in the new training rows get rows appended (initialised as
the model initialises them, from the new run's seed, their Adam moments
zero) and the unknown id's row moves past them; numeric statistics stay
RUN's. By default it trains on the training samples later than RUN's last
(`--continue-on new`); `--continue-on all` on every one. RUN is only read.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from core.config import CONTINUED_FROM, DINConfig, flag
from core.errors import ConfigError, DataError, RunError
from data.datasets import detect
from data.download import sha256_of
from data.encoders import FeatureEncoders
from data.schema import LABEL, TIME, USER
from data.splits import Splits, encode, holdout_users
from data.statistics import fit_encoders
from training import run_dir
from training.backend import Backend

log = logging.getLogger("din")
FIXED = ("data", "model")  # the setting groups a continued run takes from RUN: what its weights and samples mean
ON = ("new", "all")  # --continue-on


@dataclasses.dataclass(frozen=True)
class Parent:
    """A finished run, as a continued run reads it."""

    path: str  # absolute
    config: DINConfig
    encoders: FeatureEncoders
    backend: str  # the backend that trained it
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]  # Adam's state at its best epoch ({} for a run written before it was kept)
    timeline: dict[str, dict[str, int]]  # metrics.json's: each split's first and last sample time
    sha256: str  # of its weights file

    @classmethod
    def read(cls, path: str) -> "Parent":
        if not os.path.isdir(path):
            raise RunError(f"--continue-from {path}: no such folder (give the --out folder of a finished run)")
        config, encoders, weights, backend = run_dir.read_run(path)
        optimizer = {}
        if os.path.isfile(os.path.join(path, run_dir.OPTIMIZER)):
            optimizer = run_dir.read_weights(os.path.join(path, run_dir.OPTIMIZER))[0]
        metrics = run_dir.read_json(os.path.join(path, "metrics.json"))
        return cls(os.path.abspath(path), config, encoders, backend, weights, optimizer, metrics.get("timeline", {}),
                   sha256_of(os.path.join(path, run_dir.WEIGHTS)))

    def record(self, on: str, after: int | None) -> dict:
        """What config.json keeps of the parent (CONTINUED_FROM)."""
        return {"path": self.path, "weights_sha256": self.sha256, "timeline": self.timeline, "continue_on": on,
                "trained_after": after}


def settings(parent: Parent, given: dict, on: str, backend: str | None = None) -> tuple[DINConfig, int | None]:
    """(the continued run's config, the time its training samples come after):
    RUN's data and model settings, the given training ones. A data or model
    flag is refused in one line; so are another backend than RUN's and
    --continue-on new where RUN's data has no times."""
    if backend and backend != parent.backend:
        raise ConfigError(f"--continue-from {parent.path}: trained by the {parent.backend} backend; continue it with "
                          f"--backend {parent.backend}")
    fixed = sorted(name for name in given if name != "dataset" and DINConfig.group_of(name) in FIXED
                   and given[name] != getattr(parent.config, name))
    if fixed:
        raise ConfigError(f"{', '.join(flag(name) for name in fixed)}: a continued run keeps {parent.path}'s data and "
                          "model settings (its weights and vocabularies mean them); give only training flags "
                          "(rate, epochs, schedule, patience, seed, batch size, placement)")
    after = None
    if on == "new":
        if "train" not in parent.timeline:
            raise ConfigError(f"--continue-from {parent.path}: its data have no sample times, so there is no 'later' "
                              "to train on: pass --continue-on all")
        after = parent.timeline["train"]["last"]
    own = {name: value for name, value in given.items() if DINConfig.group_of(name) not in FIXED}
    # A decaying schedule's length is the new training split's unless given (training/resolve.py).
    return parent.config.replace(**({"decay_steps": 0} | own)), after


def splits(data_dir: str, config: DINConfig, after: int | None, parent: Parent | None = None,
           encoders: FeatureEncoders | None = None) -> Splits:
    """The continued run's splits of `data_dir`: its training samples later than
    `after` (every one when None), validation and test as the source splits
    them, encoded with `encoders` (a resumed continued run's own) or with the
    parent's grown by the new training samples."""
    source = detect(data_dir, config)
    raw = source.raw_splits(data_dir, config)
    train, test = raw["train"], raw["test"]
    if after is not None:
        if TIME not in train:
            raise DataError(f"--continue-from: {data_dir} has no sample times to find the samples after the "
                            "parent's: pass --continue-on all")
        later = np.asarray(train[TIME]) > after
        if not later.any():
            raise DataError(f"--continue-from: {data_dir} holds no training sample later than the parent's last "
                            f"({run_dir.day(after)}); give newer data, or pass --continue-on all to train on every one")
        train = {name: values[later] for name, values in train.items()}
        log.info("continuing on the %d training samples after %s (of %d; --continue-on all: every one)",
                 int(later.sum()), run_dir.day(after), len(later))
    if config.valid_on_test:
        valid = test
    elif "valid" in raw:
        valid = raw["valid"]
    else:  # a seeded share of training users, as the source itself holds out (data/sources/dataset_file.py)
        held = holdout_users(train[USER], config.valid_fraction, config.seed)
        train, valid = ({name: values[keep] for name, values in train.items()} for keep in (~held, held))
    if encoders is None:
        newer = fit_encoders(train, source.features(data_dir, config), parent.encoders.attention_groups,
                             config.min_count, config.share_embeddings, config.max_len)
        try:
            encoders = parent.encoders.grown(newer)
        except ValueError as error:
            raise DataError(f"--continue-from {parent.path}: {data_dir} has other features than the run ({error}); "
                            "continue on data of the same source and format") from None
        for name, encoder in {**encoders.categorical, **encoders.sequence}.items():
            before = ({**parent.encoders.categorical, **parent.encoders.sequence})[name].vocabulary.size
            if encoder.vocabulary.size > before:
                log.info("%s: %d new id(s) get rows (%d -> %d)", name, encoder.vocabulary.size - before, before,
                         encoder.vocabulary.size)
    if not len(train[LABEL]):
        raise DataError(f"--continue-from: {data_dir} leaves no training samples")
    return Splits(encode(train, encoders), encode(valid, encoders), encode(test, encoders), encoders)


def grown(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`old` arrays (a table [V, E] by its rows: padding, terms, unknown) laid
    into `new`'s shapes: a table with more rows keeps its old rows at their
    ids, takes `new`'s rows for the ids added, and moves its unknown row (the
    last) to the new last; every other array is old's."""
    out = {}
    for name, fresh in new.items():
        value = np.asarray(old[name])
        if value.shape != fresh.shape:
            if value.ndim != fresh.ndim or value.shape[1:] != fresh.shape[1:] or value.shape[0] > fresh.shape[0]:
                raise RunError(f"{name}: the run's shape {value.shape} does not grow into {fresh.shape}")
            value = np.concatenate([value[:-1], np.asarray(fresh)[len(value) - 1 : -1], value[-1:]]).astype(value.dtype)
        out[name] = value
    return out


def start_from(backend: Backend, parent: Parent) -> None:
    """Loads the parent's weights and Adam state into `backend` (built for the
    grown vocabularies), grown: new rows as the backend initialised them, their
    Adam moments zero, the step count the parent's."""
    weights = backend.weights()  # as the backend initialised them, for the grown vocabularies
    backend.load_weights(grown(parent.weights, weights))
    if parent.optimizer:
        zeros = {name: np.zeros(weights[name.split("/", 1)[1]].shape, value.dtype)
                 for name, value in parent.optimizer.items() if name != "count"}
        backend.load_optimizer_state(grown(parent.optimizer, zeros | {"count": parent.optimizer["count"]}))
    else:
        log.warning("%s keeps no optimiser state (a run written before runs kept it): Adam starts afresh",
                    parent.path)


def read_record(path: str) -> dict | None:
    """A run folder's record of its parent (CONTINUED_FROM in config.json), if it was continued."""
    return run_dir.read_json(os.path.join(path, "config.json")).get(CONTINUED_FROM)
