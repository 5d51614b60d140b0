"""Quality study: the paper's DIN options alone and together, over seeds.

    python bench/quality.py --data ../shared/data/movielens-1m-seed --seeds 5 --backend jax
    python bench/quality.py --data ../shared/data/ml-latest-small --seeds 3 --epochs 20

Trains every configuration of the grid (the tutorial's default, each option
alone, all of them together) for each seed with the shared loop, early
stopping on the validation split only, and prints one table: validation and
test AUC, test logloss and GAUC (mean ± sd over seeds), best epoch, and a
paired comparison of test AUC against the default (same seeds, so the seed
to seed variation common to both cancels). The best configuration is chosen
by mean VALIDATION AUC; the test columns are reported, never used to choose.
Results are also written to OUT_ROOT/quality.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.config import DINConfig  # noqa: E402
from data.datasets import load_splits  # noqa: E402
from training import fit, make_backend  # noqa: E402

# The grid: name -> DINConfig changes. "all" turns every option on.
OPTIONS = {
    "share-embeddings": dict(share_embeddings=True),
    "softmax": dict(attention_norm="softmax"),
    "mask-padding": dict(mask_padding=True),
    "dice-paper": dict(dice="paper"),
    "mba-reg": dict(mba_reg=0.01),
    "init-paper": dict(init="paper"),
}
GRID = {"default": {}, **OPTIONS, "all": {k: v for changes in OPTIONS.values() for k, v in changes.items()}}


def parse_setting(item: str) -> tuple[str, object]:
    """'learning_rate=0.001' -> ('learning_rate', 0.001), typed by the DINConfig field."""
    name, _, value = item.partition("=")
    fields = {f.name: f for f in dataclasses.fields(DINConfig)}
    if name not in fields or not value:
        raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
    default = getattr(DINConfig(), name)
    if isinstance(default, bool):
        return name, value.lower() in ("1", "true", "yes")
    if isinstance(default, tuple):
        return name, tuple(int(v) for v in value.split(","))
    return name, type(default)(value)


def mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{np.nanmean(values):.4f} ± {sd:.4f}"


def table(results: dict[str, list[dict]]) -> str:
    header = "| config | valid AUC | test AUC | test logloss | test GAUC | best epoch | test AUC - default (paired) | seeds better |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    base = np.array([r["test_auc"] for r in results.get("default", [])])
    for name, runs in results.items():
        test = np.array([r["test_auc"] for r in runs])
        gauc = [np.nan if r.get("test_gauc") is None else r["test_gauc"] for r in runs]
        if name != "default" and len(base) == len(test):
            delta = test - base
            paired = ("+" if delta.mean() >= 0 else "") + mean_sd(delta)
            better = f"{int((delta > 0).sum())}/{len(delta)}"
        else:
            paired, better = "", ""
        cells = [
            name,
            mean_sd([r["valid_auc"] for r in runs]),
            mean_sd(test),
            mean_sd([r["test_logloss"] for r in runs]),
            "n/a" if np.all(np.isnan(gauc)) else mean_sd(gauc),
            f"{np.mean([r['best_epoch'] for r in runs]):.1f}",
            paired,
            better,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the tutorial's split or a raw GroupLens folder")
    parser.add_argument("--backend", choices=("jax", "torch"), default="jax")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--configs", nargs="+", choices=sorted(GRID), default=list(GRID), help="a subset of the grid")
    parser.add_argument("--epochs", type=int, default=DINConfig.epochs)
    parser.add_argument("--mba-reg", type=float, default=OPTIONS["mba-reg"]["mba_reg"], help="lambda of the mba-reg runs")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="FIELD=VALUE", help="DINConfig changes applied to every configuration"
    )
    parser.add_argument("--out-root", default="runs/quality")
    parser.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    common = dict(parse_setting(item) for item in args.set)
    results: dict[str, list[dict]] = {}
    splits_cache = {}
    for name in args.configs:
        changes = dict(GRID[name])
        if "mba_reg" in changes:
            changes["mba_reg"] = args.mba_reg
        for seed in range(args.seeds):
            config = DINConfig(epochs=args.epochs, seed=seed, **common, **changes)
            # Splits depend on the seed (validation users) and on shared vocabularies.
            key = (seed, config.share_embeddings)
            if key not in splits_cache:
                splits_cache[key] = load_splits(args.data, config)
            splits = splits_cache[key]
            backend = make_backend(args.backend, splits.encoders.schema(), config, splits.train)
            out = os.path.join(args.out_root, f"{args.backend}-{name}-{seed}")
            result = fit(backend, splits, config, out, progress=args.progress, data_dir=args.data)
            results.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: valid AUC {result['valid_auc']:.4f}, test AUC {result['test_auc']:.4f}, "
                  f"best epoch {result['best_epoch']}", flush=True)
    os.makedirs(args.out_root, exist_ok=True)
    with open(os.path.join(args.out_root, "quality.json"), "w", encoding="utf-8") as f:
        json.dump({"data": args.data, "backend": args.backend, "results": results}, f, indent=2)
    print(f"\n{args.backend}, {args.data}, {args.seeds} seeds, mean ± sd over seeds\n")
    print(table(results))
    best = max(results, key=lambda n: np.mean([r["valid_auc"] for r in results[n]]))
    print(f"\nbest by mean validation AUC: {best}")


if __name__ == "__main__":
    main()
