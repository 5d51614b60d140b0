"""The one training loop both backends run: epochs, early stopping, metrics, run directory."""

from __future__ import annotations

import logging
import math
import os
import time

from tqdm import tqdm

from data import metrics
from data.batches import epoch_batches, num_rows
from data.config import DINConfig
from data.movielens import Splits
from data.schema import LABEL, USER
from training import run_dir
from training.backend import Backend

log = logging.getLogger("din")


def evaluate(backend: Backend, split: dict, config: DINConfig) -> dict[str, float]:
    logits = backend.predict(split, config.eval_batch_size)
    return metrics.evaluate(split[USER], split[LABEL], logits)


def fit(
    backend: Backend, splits: Splits, config: DINConfig, out_dir: str, progress: bool = True, data_dir: str | None = None
) -> dict:
    """Trains with early stopping on validation AUC, restores the best weights,
    evaluates on test and writes the run directory. Returns metrics.json's content."""
    run_dir.write_setup(out_dir, config, splits.encoders)
    n_train = num_rows(splits.train)
    has_valid = num_rows(splits.valid) > 0
    log.info("backend: %s", backend.describe)
    log.info("rows: train %d, valid %d, test %d", n_train, num_rows(splits.valid), num_rows(splits.test))

    history: list[dict[str, float]] = []
    best_auc, best_epoch, best_weights = -math.inf, 0, None
    # Speed is measured after the first epoch, which includes JAX's compilation.
    train_seconds, train_samples, first_epoch_seconds = 0.0, 0, 0.0
    for epoch in range(1, config.epochs + 1):
        batches = epoch_batches(n_train, config.batch_size, config.seed, epoch)
        samples = sum(len(rows) for rows in batches)
        with tqdm(total=samples, desc=f"epoch {epoch}", unit="ex", unit_scale=True, leave=False, disable=not progress) as bar:
            start = time.perf_counter()
            train_loss = backend.train_epoch(splits.train, batches, bar.update)
            seconds = time.perf_counter() - start
        if epoch == 1:
            first_epoch_seconds = seconds
        if epoch > 1 or config.epochs == 1:
            train_seconds, train_samples = train_seconds + seconds, train_samples + samples

        row = {"epoch": epoch, "train_loss": train_loss}
        if has_valid:
            valid = evaluate(backend, splits.valid, config)
            row.update(valid_auc=valid["auc"], valid_logloss=valid["logloss"])
        history.append(row)
        run_dir.write_history(os.path.join(out_dir, "history.csv"), history)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))

        # Valid AUC decides; without a validation split the last epoch is kept.
        score = row.get("valid_auc", float(epoch))
        if best_weights is None or score > best_auc:
            best_auc, best_epoch, best_weights = score, epoch, backend.weights()
            run_dir.write_weights(os.path.join(out_dir, run_dir.WEIGHTS), best_weights, backend.name)
        elif epoch - best_epoch >= config.patience:
            log.info("no valid AUC gain for %d epochs: stopping, best epoch %d", config.patience, best_epoch)
            break

    backend.load_weights(best_weights)
    result = {
        "backend": backend.name,
        "device": backend.describe,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "seed": config.seed,
        "data": os.path.abspath(data_dir) if data_dir else None,
        "rows": {"train": n_train, "valid": num_rows(splits.valid), "test": num_rows(splits.test)},
        "train_samples_per_s": train_samples / train_seconds if train_seconds else float("nan"),
        "first_epoch_seconds": first_epoch_seconds,
    }
    for name, split in (("valid", splits.valid), ("test", splits.test)):
        if num_rows(split):
            for key, value in evaluate(backend, split, config).items():
                result[f"{name}_{key}"] = value
    run_dir.write_json(os.path.join(out_dir, "metrics.json"), result)
    log.info("test AUC %.4f, logloss %.4f (best epoch %d)", result["test_auc"], result["test_logloss"], best_epoch)
    return result
