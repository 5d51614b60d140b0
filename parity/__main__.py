"""Prove that a run's weights compute the same thing in both backends.

    python -m parity RUN_DIR [--dtype float64|float32] [--batch-size N] [--data DIR]

Loads a run directory written by either backend, converts its weights to the
other one, runs both on the run's test data in eval mode and in train mode
(batch statistics, dropout off) and prints, per output, the max absolute and
relative difference over all batches, plus each backend's test AUC. Exits 1
when a difference is over its tolerance, and 2 (one line on stderr) for bad
input: not a finished run, damaged files, data in another format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data", help="folder with test.csv (default: the run's data folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 2:  # train mode normalises over the batch: one row has no batch statistics
        print(f"error: --batch-size {args.batch_size}: must be >= 2", file=sys.stderr)
        return 2
    import jax

    # Process-global, so set before any JAX array exists.
    jax.config.update("jax_enable_x64", args.dtype == "float64")

    from core.errors import UserError

    try:
        return compare_run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def compare_run(args: argparse.Namespace) -> int:
    from core.errors import RunError
    from data.batches import eval_batches
    from data.datasets import load_test
    from data.schema import LABEL
    from inference.convert import to_backend
    from parity.compare import Twins
    from parity.diffs import TOLERANCES, Diff, diff, format_table
    from training import metrics
    from training.backend import BACKENDS
    from training.run_dir import read_run

    config, encoders, weights, backend = read_run(args.run_dir)
    data_dir = args.data
    if data_dir is None:
        metrics_path = os.path.join(args.run_dir, "metrics.json")
        try:
            with open(metrics_path, encoding="utf-8") as f:
                data_dir = json.load(f).get("data")
        except (OSError, ValueError) as error:
            raise RunError(f"{metrics_path}: unreadable ({error}); pass --data DIR") from None
        if not data_dir:
            raise RunError("the run does not record its data folder; pass --data DIR")
    if backend not in BACKENDS:
        raise RunError(f"{args.run_dir}: weights name no backend ({backend!r})")
    schema = encoders.schema()
    config = config.replace(attention_dropout=0.0, mlp_dropout=0.0)  # dropout RNGs differ by framework
    try:
        state = to_backend(weights, backend, "torch", template=lambda: {})  # the torch state_dict
        twins = Twins(schema, config, args.dtype, torch_state=state)
    except (KeyError, ValueError, RuntimeError) as error:  # names or shapes that do not fit encoders.json
        raise RunError(f"{args.run_dir}: the weights do not fit the model that encoders.json describes "
                       f"({str(error).splitlines()[0]}); the run's files are damaged or mixed") from None
    test = load_test(data_dir, config, encoders)
    worst: dict[str, Diff] = {}  # per output, the batch with the largest difference
    logits: dict[str, list[np.ndarray]] = {"torch": [], "jax": []}
    for rows in eval_batches(len(test[LABEL]), args.batch_size):
        batch = twins.batch(test, rows)
        found = twins.forward(batch, train=False, prefix="eval ")
        if len(rows) > 1:  # BatchNorm cannot train on one row, in either framework
            found += twins.forward(batch, train=True, prefix="train ")
        for row in found:
            if row.name not in worst or row.max_abs > worst[row.name].max_abs:
                worst[row.name] = row
        for name, values in zip(("torch", "jax"), twins.eval_logits(batch)):
            logits[name].append(values)

    auc = {name: metrics.auc(test[LABEL], np.concatenate(values)) for name, values in logits.items()}
    table = list(worst.values()) + [diff("test AUC", auc["torch"], auc["jax"], TOLERANCES[args.dtype]["auc"])]
    print(f"run {args.run_dir} (weights from {backend}), {len(test[LABEL])} test rows, {args.dtype}")
    print(format_table(table))
    print(f"test AUC: torch {auc['torch']:.6f}, jax {auc['jax']:.6f}")
    failed = [r.name for r in table if not r.ok]
    if failed:
        print(f"OVER TOLERANCE: {', '.join(failed)}")
        return 1
    print("all outputs within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
