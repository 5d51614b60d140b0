"""The one training loop both backends run: epochs, early stopping, metrics, run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import threading
import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from core.config import DINConfig
from core.errors import UserError
from core.workdirs import require_space
from data.batches import epoch_batches, num_rows, take
from data.datasets import data_fingerprint
from data.schema import LABEL, USER
from data.splits import Splits
from training import metrics
from training import checkpoint, health, plots, run_dir
from training.backend import Backend

log = logging.getLogger("din")


class Diverged(UserError):
    """The training loss became NaN or infinite."""


@contextlib.contextmanager
def deferred_interrupt():
    """Ctrl-C (SIGINT) while checkpointing: the first one is held until the loop
    reaches a safe point (no checkpoint being written, no background writer
    thread alive), where `check()` raises KeyboardInterrupt; a second one
    interrupts at once."""
    requested = threading.Event()

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        log.warning("interrupt: stopping after the current segment (at the next checkpoint; Ctrl-C again to stop at once)")

    def check() -> None:
        if requested.is_set():
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread handles signals
        yield check
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def evaluate(backend: Backend, split: dict, config: DINConfig, name: str = "validation") -> dict[str, float]:
    logits = backend.predict(split, config.eval_batch_size)
    if not np.isfinite(logits).all():  # the losses may still have been finite: the weights overflowed since
        raise Diverged(f"training diverged: the model's outputs on the {name} split are not finite; lower "
                       f"--learning-rate (now {config.learning_rate:g}) and train again")
    return metrics.evaluate(split[USER], split[LABEL], logits)


def both_labels(split: dict) -> bool:
    """Whether a split holds rows of both labels (AUC is defined on it)."""
    return len(np.unique(np.asarray(split[LABEL]))) > 1


def check_trainable(splits: Splits) -> None:
    """Refuses a training split no step can learn from, and names the quiet
    degenerate cases in the log; before anything is written."""
    n_train = num_rows(splits.train)
    if n_train < 2:
        raise UserError(f"the training split has {n_train} row(s): a training step needs at least 2 (BatchNorm "
                        "normalises over the batch); give more training rows")
    if not both_labels(splits.train):
        raise UserError(f"every training label is {float(splits.train[LABEL][0]):g}: a click model needs rows of "
                        "both labels (0 and 1) to learn anything; check the label column")
    if not splits.encoders.attention_groups:
        log.warning("no attention group: the model pools each sequence without attention (a plain MLP, not DIN); "
                    "a dataset file's [attention] table names (query, history) pairs")
    if num_rows(splits.valid) and not both_labels(splits.valid):
        log.warning("the validation labels are all of one class: validation AUC is undefined, so no epoch can be "
                    "chosen by it; the last epoch is kept")


@dataclasses.dataclass(frozen=True)
class Run:
    """What one training run works with: fixed from start to end."""

    backend: Backend
    splits: Splits
    config: DINConfig
    out_dir: str  # the run directory being written
    progress: bool  # progress bars
    data_dir: str | None  # the data folder, absolute (None: splits given directly)
    interrupted: Callable[[], None]  # raises KeyboardInterrupt at a safe point after a held Ctrl-C

    @property
    def primary(self) -> bool:  # on several hosts, one process writes the run directory
        return self.backend.primary


def shown(name: str, value: float) -> str:
    """A history value as the log prints it: n/a where a metric is undefined
    (a GAUC without a user with both labels), as the run's summary says."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}" if name.startswith("attention_norm") else f"{value:.4f}"


def fit(
    backend: Backend,
    splits: Splits,
    config: DINConfig,
    out_dir: str,
    progress: bool = True,
    data_dir: str | None = None,
    resume: bool = False,
    parent: dict | None = None,
) -> dict:
    """Trains with early stopping on validation AUC, restores the best weights,
    evaluates on test and writes the run directory. Returns metrics.json's content.

    config.checkpoint_every > 0 writes the full training state every that many
    optimiser steps (training/checkpoint.py); resume=True continues from the
    newest checkpoint in out_dir, ending exactly where an uninterrupted run ends.
    parent: a continued run's record of the run it started from, kept in config.json.
    """
    data_dir = os.path.abspath(data_dir) if data_dir else None
    loop = _start(backend, splits, config, out_dir, data_dir, resume, parent)
    every = config.checkpoint_every
    # The attention's health is measured on a fixed draw of validation rows (training rows without them).
    probed = splits.valid if num_rows(splits.valid) else splits.train
    probe = take(probed, health.probe_rows(num_rows(probed), config.seed))
    with deferred_interrupt() if every else contextlib.nullcontext(lambda: None) as interrupted:
        run = Run(backend, splits, config, out_dir, progress, data_dir, interrupted)
        while loop.epoch <= config.epochs:
            batches = epoch_batches(num_rows(splits.train), config.batch_size, config.seed, loop.epoch)
            total = sum(len(rows) for rows in batches)
            # leave=True: the bar's last state (100%, the epoch's rate) stays on screen and in logs.
            with tqdm(total=total, initial=loop.samples, desc=f"epoch {loop.epoch}", unit="ex", unit_scale=True,
                      leave=True, disable=not progress) as bar:
                start, resumed_at = time.perf_counter(), loop.samples
                while loop.position < len(batches):
                    # A segment: up to the next multiple of checkpoint_every steps (the whole epoch without them).
                    stop = len(batches) if not every else min(len(batches), loop.position + every - loop.step % every)
                    losses = backend.train_batches(splits.train, batches[loop.position : stop], bar.update)  # [steps]
                    _advance(run, loop, batches, stop, losses)
                    if every and loop.step % every == 0:
                        checkpoint.save(out_dir, backend, loop)
                    interrupted()  # a held Ctrl-C stops here, with the newest checkpoint whole
                seconds = time.perf_counter() - start
            if not _end_epoch(run, loop, probe, seconds, total - resumed_at):
                break
    return _finish(run, loop)


def _start(backend: Backend, splits: Splits, config: DINConfig, out_dir: str, data_dir: str | None,
           resume: bool, parent: dict | None) -> checkpoint.LoopState:
    """The loop's state: a new run's (its setup written) or the newest
    checkpoint's; the checks that come before anything is written first."""
    check_trainable(splits)
    if backend.primary:
        check_space(backend, config, out_dir)
    # What a checkpoint must match to be resumed: these settings and these data files.
    # Hashing the data costs a read of every file, so only runs with checkpoints pay it.
    fingerprint = None
    if config.checkpoint_every or resume:
        fingerprint = checkpoint.fingerprint(config, data_fingerprint(data_dir, config) if data_dir else None)
    if resume:
        loop = checkpoint.restore(out_dir, backend, fingerprint)
        log.info("resuming %s at epoch %d, batch %d (step %d)", out_dir, loop.epoch, loop.position, loop.step)
    else:
        loop = checkpoint.LoopState(backend.name, data=data_dir, fingerprint=fingerprint)
        if backend.primary:
            run_dir.write_setup(out_dir, config, splits.encoders, parent)
    log.info("backend: %s", backend.describe)
    log.info("rows: train %d, valid %d, test %d", num_rows(splits.train), num_rows(splits.valid), num_rows(splits.test))
    if splits.timeline:
        log.info("samples in time (UTC): %s", ", ".join(
            f"{split} {run_dir.day(span['first'])} to {run_dir.day(span['last'])}" for split, span in splits.timeline.items()))
    return loop



def check_space(backend: Backend, config: DINConfig, out_dir: str) -> None:
    """Refuses before training when out_dir's disk cannot hold the run: its
    weights twice (model.safetensors and the best epoch's), and with
    checkpoints each kept one's weights, Adam's two moments and best weights."""
    size = sum(np.asarray(values).nbytes for values in backend.weights().values())
    copies = 2 + (checkpoint.KEEP + 1) * 4 if config.checkpoint_every else 2
    require_space(out_dir, size * copies, "this run's weights" + " and checkpoints" * bool(config.checkpoint_every),
                  "free space there or train into another --out")


def _advance(run: Run, loop: checkpoint.LoopState, batches: list[np.ndarray], stop: int, losses: np.ndarray) -> None:
    """Counts the batches [loop.position, stop) just trained, whose mean losses
    are `losses`; a non-finite loss ends the run in one line."""
    sizes = np.array([len(rows) for rows in batches[loop.position : stop]])
    if not np.isfinite(losses).all():
        first = int(np.flatnonzero(~np.isfinite(losses))[0])
        raise Diverged(
            f"training diverged: the loss is {losses[first]} at epoch {loop.epoch}, step {loop.step + first + 1} "
            f"(batch {loop.position + first + 1} of {len(batches)}); lower --learning-rate "
            f"(now {run.config.learning_rate:g}) and train again"
        )
    loop.loss_sum += float(np.dot(losses, sizes))
    loop.samples += int(sizes.sum())
    loop.step += len(sizes)
    loop.position = stop


def _end_epoch(run: Run, loop: checkpoint.LoopState, probe: dict, seconds: float, trained: int) -> bool:
    """The epoch's record (history row, log line, the attention's health), the
    best weights so far kept; False when early stopping ends training.
    seconds, trained: the epoch's training time and samples (a resumed epoch's since the resume)."""
    backend, splits, config, epoch = run.backend, run.splits, run.config, loop.epoch
    # Speed is measured after the first epoch, which includes JAX's compilation.
    if epoch == 1:
        loop.first_epoch_seconds = seconds
    if epoch > 1 or config.epochs == 1:
        loop.train_seconds, loop.train_samples = loop.train_seconds + seconds, loop.train_samples + trained

    row = {"epoch": epoch, "train_loss": loop.loss_sum / max(loop.samples, 1)}
    if num_rows(splits.valid) and both_labels(splits.valid):  # else: no epoch can be chosen by AUC
        valid = evaluate(backend, splits.valid, config)
        row.update(valid_auc=valid["auc"], valid_gauc=valid["gauc"], valid_logloss=valid["logloss"])
    row.update(epoch_seconds=seconds, samples_per_s=trained / seconds if seconds else float("nan"))
    row.update(health.measure(splits.encoders.schema(), probe, backend.attention(probe), backend.attention_norms()))
    loop.history.append(row)
    if run.primary:
        run_dir.write_history(os.path.join(run.out_dir, "history.csv"), loop.history)
    log.info("epoch %d: %s", epoch, ", ".join(f"{k} {shown(k, v)}" for k, v in row.items() if k != "epoch"))
    collapsed = [group for group in health.collapsed(row)
                 if not any(group in health.collapsed(earlier) for earlier in loop.history[:-1])]
    if collapsed:  # warned once per group, the first epoch it collapses
        log.warning(health.collapse_warning(collapsed, epoch))
    loop.epoch, loop.position, loop.loss_sum, loop.samples = epoch + 1, 0, 0.0, 0

    # Valid AUC decides; without a validation split the last epoch is kept.
    score = row.get("valid_auc", float(epoch))
    if loop.best_weights is None or score > loop.best_score:
        loop.best_score, loop.best_epoch, loop.best_weights = score, epoch, backend.weights()
        loop.best_optimizer = backend.optimizer_state()  # what a continued run starts from
        if run.primary:
            run_dir.write_weights(os.path.join(run.out_dir, run_dir.WEIGHTS), loop.best_weights, backend.name)
    elif epoch - loop.best_epoch >= config.patience:
        log.info("no valid AUC gain for %d epochs: stopping, best epoch %d", config.patience, loop.best_epoch)
        return False
    return True


def _finish(run: Run, loop: checkpoint.LoopState) -> dict:
    """Restores the best weights, evaluates and writes metrics.json; returns its content."""
    backend, splits, config, out_dir = run.backend, run.splits, run.config, run.out_dir
    n_train = num_rows(splits.train)
    backend.load_weights(loop.best_weights)
    result = {
        "backend": backend.name,
        "device": backend.describe,
        "best_epoch": loop.best_epoch,
        "epochs_run": len(loop.history),
        "seed": config.seed,
        "data": loop.data or run.data_dir,
        "rows": {"train": n_train, "valid": num_rows(splits.valid), "test": num_rows(splits.test)},
        "train_samples_per_s": loop.train_samples / loop.train_seconds if loop.train_seconds else float("nan"),
        "first_epoch_seconds": loop.first_epoch_seconds,
        "steps": loop.step,
    }
    if splits.timeline:  # the data's times: each split's first and last sample (a time split's cut times)
        result["timeline"] = splits.timeline
    # The attention's health at the epoch whose weights are kept (training/health.py).
    best = next((row for row in loop.history if row["epoch"] == loop.best_epoch), {})
    result |= {key: value for key, value in best.items() if key.startswith("attention_")}
    for name, split in (("valid", splits.valid), ("test", splits.test)):
        if num_rows(split):
            for key, value in evaluate(backend, split, config, name).items():
                result[f"{name}_{key}"] = value
    if run.primary:
        if loop.best_optimizer:
            run_dir.write_weights(os.path.join(out_dir, run_dir.OPTIMIZER), loop.best_optimizer, backend.name)
        plots.plot_history(os.path.join(out_dir, "history.png"), loop.history, loop.best_epoch)
        run_dir.write_json(os.path.join(out_dir, "metrics.json"), result)
        run_dir.mark_finished(out_dir)
    if num_rows(splits.test):
        found = {key: result[f"test_{key}"] for key in ("auc", "gauc", "logloss")}
        log.info("test %s (best epoch %d)", metrics.summary(found, splits.test[USER], splits.test[LABEL]), loop.best_epoch)
    return result
