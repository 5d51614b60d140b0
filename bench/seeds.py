"""Trains with `train.py` over several seeds and backends and prints mean and sd.

    python bench/seeds.py --data ../shared/data/movielens-1m-seed --seeds 5 [--valid-on-test]

Each run directory lands in OUT_ROOT/<backend>-<seed>; the table is computed
from their metrics.json files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402

COLUMNS = ("test_auc", "test_logloss", "test_gauc", "best_epoch", "train_samples_per_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out-root", default="runs/seeds")
    parser.add_argument("--valid-on-test", action="store_true")
    args, extra = parser.parse_known_args()
    results: dict[str, list[dict]] = {}
    for backend in args.backends:
        for seed in range(args.seeds):
            out = os.path.join(args.out_root, f"{backend}-{seed}")
            argv = ["--backend", backend, "--data", args.data, "--seed", str(seed), "--out", out, "--no-progress"]
            argv += ["--valid-on-test"] if args.valid_on_test else []
            if train.main(argv + extra) != 0:
                sys.exit(f"run {out} failed")
            with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
                results.setdefault(backend, []).append(json.load(f))
    print(f"\n{'backend':<8}" + "".join(f"{c:>24}" for c in COLUMNS))
    for backend, runs in results.items():
        cells = []
        for column in COLUMNS:
            values = np.array([np.nan if r[column] is None else r[column] for r in runs], dtype=float)
            cells.append(f"{values.mean():>14.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:<7.4f}")
        print(f"{backend:<8}" + "".join(cells))


if __name__ == "__main__":
    main()
