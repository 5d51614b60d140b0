"""Quality study: DIN's options alone and together, over seeds, chosen on validation.

    python bench/quality.py --data ../shared/data/ml-latest-small --seeds 5 --epochs 20 --configs default \
        low-rated-history user-feature paper-sizes warmup-cosine --combine
    python bench/quality.py --data ../shared/data/movielens-1m-seed --seeds 5 --backend jax

Trains every configuration asked for (the default, each option alone, "all"
of the paper's options together) for each seed with the shared loop, early
stopping on the validation split only, and prints one table: validation AUC
and GAUC, test AUC, GAUC and logloss (mean ± standard error over seeds), best
epoch, and the paired gain in VALIDATION AUC over the default (same seeds,
so the seed-to-seed variation common to both cancels) with its standard
error. --combine then trains the combination of every option whose paired
validation gain exceeds two standard errors. Everything is chosen on
validation; the test columns are reported, never used to choose. A
configuration the data cannot build (a sequential-protocol option on the
tutorial's split) is reported and skipped. Results are also written to
OUT_ROOT/quality.json; --reuse reads the runs OUT_ROOT already holds with the
same configuration, so a study resumes, or grows by configurations, without
training them again.
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

from core.config import PRESETS, DINConfig  # noqa: E402
from core.errors import DataError, RunError  # noqa: E402
from data.datasets import load_splits  # noqa: E402
from training import fit, make_backend  # noqa: E402
from training.resolve import resolve  # noqa: E402
from training.run_dir import read_run  # noqa: E402

# The grid: name -> DINConfig changes. "all" turns every option on.
OPTIONS = {
    "share-embeddings": dict(share_embeddings=True),
    "softmax": dict(attention_norm="softmax"),
    "mask-padding": dict(mask_padding=True),
    "dice-paper": dict(dice="paper"),
    "mba-reg": dict(mba_reg=0.01),
    "init-paper": dict(init="paper"),
}
# What the default cannot see (issue: what the user rated low, who the user is,
# the paper's sizes, a schedule); each alone, then combined by --combine.
MORE = {
    "low-rated-history": dict(low_rated_history=True),
    "user-feature": dict(user_feature=True),
    "paper-sizes": dict(PRESETS["paper"]),  # raw MovieLens' default in the sequential protocol
    "tutorial-sizes": dict(PRESETS["tutorial"]),  # DINConfig's default
    "wide": dict(embedding_dim=32, attention_hidden=(64, 32), mlp_hidden=(128, 64)),  # between the two
    "warmup-cosine": dict(lr_schedule="cosine", warmup_steps=500),
    "lr-0.001": dict(learning_rate=0.001),
    # Regularisation per parameter group (docs/model.md, "Regularisation").
    "decay-all": dict(embedding_weight_decay=0.001, attention_weight_decay=0.001, mlp_weight_decay=0.001),
    "attention-decay-0.0001": dict(attention_weight_decay=0.0001),
    "no-decay": dict(embedding_weight_decay=0.0, attention_weight_decay=0.0, mlp_weight_decay=0.0),
    "decoupled-0.1": dict(weight_decay_form="decoupled", embedding_weight_decay=0.1, attention_weight_decay=0.1,
                          mlp_weight_decay=0.1),
    "decoupled-1": dict(weight_decay_form="decoupled", embedding_weight_decay=1.0, attention_weight_decay=1.0,
                        mlp_weight_decay=1.0),
    # The paper's BaseModel: the histories pooled, no attention.
    "pooling-mean": dict(pooling="mean"),
    "pooling-sum": dict(pooling="sum"),
    "sigmoid": dict(attention_norm="sigmoid"),
    # Another evaluation, not another model: one cut time for every user (raw MovieLens).
    "split-time": dict(split="time"),
}
GRID = {"default": {}, **OPTIONS, "all": {k: v for changes in OPTIONS.values() for k, v in changes.items()}, **MORE}


def parse_setting(item: str) -> tuple[str, object]:
    """'learning_rate=0.001' -> ('learning_rate', 0.001), typed by the DINConfig field."""
    name, _, value = item.partition("=")
    fields = {f.name: f for f in dataclasses.fields(DINConfig)}
    if name not in fields or not value:
        raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
    default = getattr(DINConfig(), name)
    if isinstance(default, bool) or fields[name].type == "bool | None":
        if value.lower() not in BOOLEANS:
            raise SystemExit(f"--set {item!r}: {name} is true or false")
        return name, BOOLEANS[value.lower()]
    try:
        if isinstance(default, tuple):
            return name, tuple(int(v) for v in value.split(","))
        return name, type(default)(value)
    except ValueError:
        raise SystemExit(f"--set {item!r}: {name} takes {'comma-separated integers' if isinstance(default, tuple) else type(default).__name__}") from None


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def finished(out: str, config: DINConfig) -> dict | None:
    """A finished run's metrics.json, if `out` holds one trained with `config` (--reuse)."""
    try:
        trained_with = read_run(out)[0]  # the one definition of a finished run directory
    except RunError:
        return None
    if trained_with != config:
        return None
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def attention_ratio(result: dict, out: str, splits) -> float:
    """The mean over attention groups of the largest-weight ratio at the kept
    epoch (training/health.py; 1.0: the attention pools); measured on the
    run's weights where metrics.json predates it; NaN without attention."""
    ratios = [v for k, v in result.items() if k.startswith("attention_ratio/")]
    if ratios:
        return float(np.mean(ratios))
    from inference.model import load_run
    from training import health

    model = load_run(out)
    if not model.schema.attention_groups or model.config.pooling != "attention":
        return float("nan")
    probe = {k: np.asarray(v)[health.probe_rows(len(splits.valid["label"]), model.config.seed)]
             for k, v in splits.valid.items()}
    _, weights = model.forward(probe)
    return float(np.mean([health.weight_ratio(w, health.lengths(model.schema, probe, g)) for g, w in weights.items()]))


def standard_error(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def mean_se(values) -> str:
    return f"{np.nanmean(np.asarray(values, dtype=float)):.4f} ± {standard_error(values):.4f}"


def valid_gain(results: dict[str, list[dict]], name: str) -> tuple[float, float]:
    """(mean, standard error) of the paired gain in validation AUC of `name` over the default."""
    base = np.array([r["valid_auc"] for r in results["default"]])
    runs = np.array([r["valid_auc"] for r in results[name]])
    return float((runs - base).mean()), standard_error(runs - base)


def table(results: dict[str, list[dict]]) -> str:
    header = ("| config | valid AUC | valid GAUC | test AUC | test GAUC | test logloss | best epoch | attention ratio "
              "| valid AUC gain (paired) | > 2 SE |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]

    def column(runs, key):
        values = [np.nan if r.get(key) is None else r[key] for r in runs]
        return "n/a" if np.all(np.isnan(values)) else mean_se(values)

    for name, runs in results.items():
        gain, beyond = "", ""
        if name != "default" and len(results.get("default", [])) == len(runs):
            mean, se = valid_gain(results, name)
            gain, beyond = f"{mean:+.4f} ± {se:.4f}", "yes" if mean > 2 * se else "no"
        cells = [name, column(runs, "valid_auc"), column(runs, "valid_gauc"), column(runs, "test_auc"),
                 column(runs, "test_gauc"), column(runs, "test_logloss"),
                 f"{np.mean([r['best_epoch'] for r in runs]):.1f}",
                 column(runs, "attention_ratio").split(" ±")[0].replace("n/a", "pooled"), gain, beyond]
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
    parser.add_argument("--reuse", action="store_true",
                        help="read the results of runs OUT_ROOT already holds with the same configuration instead of "
                             "training them again (a study resumed, or extended by configurations)")
    parser.add_argument("--combine", action="store_true",
                        help="then train the options whose validation gain exceeds two standard errors, together")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    common = dict(parse_setting(item) for item in args.set)
    results: dict[str, list[dict]] = {}
    splits_cache: dict = {}

    def train(name: str, changes: dict) -> None:
        for seed in range(args.seeds):
            chosen = {**common, **changes}
            # Splits depend on the seed (validation users) and on the data settings.

            def load(config: DINConfig):
                key = (seed, tuple(sorted(config.group("data").items())))
                if key not in splits_cache:
                    splits_cache[key] = load_splits(args.data, config)
                return splits_cache[key]

            try:  # every default resolved as train.py resolves it
                config, splits = resolve(args.backend, args.data, DINConfig(epochs=args.epochs, seed=seed, **chosen),
                                         chosen, load)
            except DataError as error:
                print(f"{name}: skipped ({error})", flush=True)
                return
            out = os.path.join(args.out_root, f"{args.backend}-{name}-{seed}")
            result = finished(out, config) if args.reuse else None
            if result is None:
                backend = make_backend(args.backend, splits.encoders.schema(), config, splits.train)
                result = fit(backend, splits, config, out, progress=args.progress, data_dir=args.data)
            result["attention_ratio"] = attention_ratio(result, out, splits)
            results.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: valid AUC {result['valid_auc']:.4f}, test AUC {result['test_auc']:.4f}, "
                  f"test GAUC {float(result['test_gauc'] if result['test_gauc'] is not None else 'nan'):.4f}, best epoch {result['best_epoch']}, attention ratio "
                  f"{result['attention_ratio']:.2f}", flush=True)

    for name in args.configs:
        changes = dict(GRID[name])
        if "mba_reg" in changes:
            changes["mba_reg"] = args.mba_reg
        train(name, changes)
    if args.combine and "default" in results:
        gains = {name: valid_gain(results, name) for name in results if name not in ("default", "all")}
        chosen = [name for name, (mean, se) in gains.items() if mean > 2 * se]
        if len(chosen) > 1:
            train("+".join(chosen), {k: v for name in chosen for k, v in GRID[name].items()})
        print(f"options whose validation gain exceeds two standard errors: {', '.join(chosen) or 'none'}")
    os.makedirs(args.out_root, exist_ok=True)
    with open(os.path.join(args.out_root, "quality.json"), "w", encoding="utf-8") as f:
        json.dump({"data": args.data, "backend": args.backend, "results": results}, f, indent=2)
    print(f"\n{args.backend}, {args.data}, {args.seeds} seeds, mean ± standard error over seeds\n")
    print(table(results))
    best = max(results, key=lambda n: np.mean([r["valid_auc"] for r in results[n]]))
    print(f"\nbest by mean validation AUC: {best}")


if __name__ == "__main__":
    main()
