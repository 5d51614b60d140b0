"""Every default of a run, resolved once, before anything is built.

A run's settings come from three places, applied in this order:

1. the flags the user gave (DINConfig's own defaults for the rest);
2. the data's defaults (Source.defaults): on raw MovieLens in the sequential
   protocol the paper's sizes, the softmax attention, the low-rated history
   and the user id; elsewhere those two features off;
3. values derived from the training split: the learning-rate decay's length
   (`decay_steps` 0: the whole run) and the share of history positions the
   backend computes (`history_share` 0: the JAX backend's packing, every
   position in torch).

`resolve` returns the DINConfig with every one of them concrete, and logs
each default it applied. config.json records that config, so resume, predict
and export read what ran, never the code's defaults of the day.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping

from core.config import DINConfig
from core.flags import flag
from data.sources import detect
from data.splits import Splits
from training.backend import check, derived

log = logging.getLogger("din")


def data_defaults(backend: str, data_dir: str, config: DINConfig, given: Collection[str]) -> DINConfig:
    """`config` with the data's own defaults where no flag chose, checked
    against the backend; detecting the source checks that the folder (and its
    dataset file) is readable, before anything is written."""
    chosen = detect(data_dir, config).defaults(config)
    resolved = config.replace(**{name: value for name, value in chosen.items() if name not in given})
    check(backend, resolved)
    applied = {name: getattr(resolved, name) for name in chosen if name not in given}
    if applied:
        log.info("this data's defaults (a flag overrides each, --preset tutorial the sizes): %s", as_flags(applied))
    return resolved


def resolve(backend: str, data_dir: str, config: DINConfig, given: Collection[str],
            load: Callable[[DINConfig], Splits]) -> tuple[DINConfig, Splits]:
    """(the run's config, every value concrete; its splits, loaded by `load`
    with the data settings resolved)."""
    config = data_defaults(backend, data_dir, config, given)
    splits = load(config)
    resolved = derived(backend, config, splits.encoders.schema(), splits.train)
    changed = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(DINConfig)
               if getattr(resolved, f.name) != getattr(config, f.name)}
    if changed:
        log.info("from the training split: %s", as_flags(changed))
    return resolved, splits


def as_flags(settings: Mapping[str, object]) -> str:
    """{'attention_hidden': (80, 40), 'user_feature': False} -> '--attention-hidden 80 40, --no-user-feature'."""
    def one(name: str, value: object) -> str:
        if isinstance(value, bool):
            return flag(name) if value else "--no-" + flag(name)[2:]
        return f"{flag(name)} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"

    return ", ".join(one(name, value) for name, value in settings.items())
