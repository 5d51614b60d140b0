"""What continuing a run on newer data costs and gains, against freezing it or
retraining from scratch.

    python bench/continual.py --data ../shared/data/ml-latest-small --windows 3 [--backend jax] [--epochs 10]
                              [--out-root runs/continual] [--json FILE] [--plot FILE]

The ratings' timeline (of a CSV release, or the tutorial's split: its two
files' rows, one per user, by their timestamp) is cut at quantiles: the first run sees the events
before the 40% point (t0), then K windows split the rest evenly (t1 .. tK).
Folder k holds the events before tk, each split by time (--split time: its
latest 10% of samples are test, the 10% before them validation). For each
window k it compares, on folder k's test samples:

  frozen     the first run, as it was (its vocabularies too: every id that
             arrived since is its one unknown id)
  continued  the first run continued window by window (train.py
             --continue-from the previous window's run on folder k: the
             samples after the previous run's last, vocabularies grown)
  retrained  a new run trained from scratch on folder k

and prints test AUC, GAUC, the share of test samples whose candidate the
model does not know, and the training wall time; a plot of the AUCs by
window goes to --plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from core.config import DINConfig  # noqa: E402
from data.datasets import raw_splits  # noqa: E402
from data.sources.grouplens import detect_format  # noqa: E402
from inference import load_run  # noqa: E402

FIRST = 0.4  # the first run's share of the timeline
TUTORIAL_FILES = ("train.csv", "test.csv")


def folders(data: str, root: str, windows: int) -> list[str]:
    """Folder k (0 .. K): the rows before the cut tk (a CSV release's ratings,
    with its movies file; or the tutorial's train.csv and test.csv)."""
    tutorial = all(os.path.isfile(os.path.join(data, name)) for name in TUTORIAL_FILES)
    if not tutorial and detect_format(data) != "csv":
        raise SystemExit(f"{data}: bench/continual.py cuts a ratings.csv release (ml-latest-small's layout) or the "
                         "tutorial's split")
    cut_files = TUTORIAL_FILES if tutorial else ("ratings.csv",)
    kept = () if tutorial else ("movies.csv",)
    tables = {name: pd.read_csv(os.path.join(data, name), dtype={"timestamp": np.int64}, keep_default_na=False)
              for name in cut_files}
    times = np.concatenate([table["timestamp"].to_numpy() for table in tables.values()])
    cuts = np.quantile(times, [FIRST + (1 - FIRST) * k / windows for k in range(windows + 1)])
    cuts[-1] = times.max() + 1
    out = []
    for k, cut in enumerate(cuts):
        folder = os.path.join(root, "data", os.path.basename(os.path.normpath(data)), f"window-{k}")
        if not os.path.isfile(os.path.join(folder, cut_files[0])):
            os.makedirs(folder, exist_ok=True)
            for name, table in tables.items():
                table[table["timestamp"] < cut].to_csv(os.path.join(folder, name), index=False)
            for name in kept:
                with open(os.path.join(data, name), "rb") as src, open(os.path.join(folder, name), "wb") as dst:
                    dst.write(src.read())
        out.append(folder)
    return out


def trained(argv: list[str], out: str) -> float:
    """Trains (train.py) into `out` unless it holds a finished run; returns the wall seconds (0: reused)."""
    if os.path.isfile(os.path.join(out, "metrics.json")):
        return json.load(open(os.path.join(out, "timing.json")))["seconds"]
    start = time.perf_counter()
    if train.main([*argv, "--out", out, "--no-progress"]) != 0:
        raise SystemExit(f"training {out} failed")
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "timing.json"), "w") as f:  # beside the run: what --reuse reads back
        json.dump({"seconds": seconds}, f)
    return seconds


def scored(run: str, folder: str) -> dict[str, float]:
    """The run's test AUC, GAUC and share of unknown candidates on the folder's test samples."""
    model = load_run(run)
    config = DINConfig.from_json(open(os.path.join(run, "config.json")).read())
    test = raw_splits(folder, config)["test"]
    found = model.evaluate(test)
    unknown, total = found["unknown_ids"]["movieId"]
    return {"auc": found["auc"], "gauc": found["gauc"], "unknown_candidates": unknown / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a raw GroupLens CSV release (ml-latest-small), or the "
                        "tutorial's split")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--backend", choices=("jax", "torch"), default="jax")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out-root", default="runs/continual")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--plot", help="draw the AUCs by window here (PNG)")
    args = parser.parse_args()

    root = os.path.join(args.out_root, os.path.basename(os.path.normpath(args.data)), args.backend)
    data = folders(args.data, args.out_root, args.windows)
    common = ["--backend", args.backend, "--split", "time", "--epochs", str(args.epochs)]
    first = os.path.join(root, "first")
    seconds = {"first": trained([*common, "--data", data[0]], first)}
    rows, previous = [], first
    for k in range(1, args.windows + 1):
        continued = os.path.join(root, f"continued-{k}")
        retrained = os.path.join(root, f"retrained-{k}")
        seconds[continued] = trained(["--continue-from", previous, "--data", data[k], "--epochs", str(args.epochs)],
                                     continued)
        seconds[retrained] = trained([*common, "--data", data[k]], retrained)
        for kind, run, wall in (("frozen", first, 0.0), ("continued", continued, seconds[continued]),
                                ("retrained", retrained, seconds[retrained])):
            rows.append({"window": k, "model": kind, **scored(run, data[k]), "train_seconds": wall})
        previous = continued

    table = pd.DataFrame(rows)
    print(f"{args.backend}, {args.data}, {args.windows} windows after the first {FIRST:.0%} of the timeline "
          f"(first run: {seconds['first']:.0f} s)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "first_seconds": seconds["first"], "rows": rows}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (auc, unknown) = plt.subplots(1, 2, figsize=(10, 3.8))
        for kind, group in table.groupby("model", sort=False):
            auc.plot(group["window"], group["auc"], marker="o", label=kind)
            unknown.plot(group["window"], group["unknown_candidates"], marker="o", label=kind)
        auc.set(xlabel="window", ylabel="test AUC", title="test AUC on each window's latest samples")
        unknown.set(xlabel="window", ylabel="share", title="test candidates the model does not know")
        for axis in (auc, unknown):
            axis.set_xticks(range(1, args.windows + 1))
            axis.legend()
        fig.suptitle(f"{args.backend}: frozen, continued window by window, retrained from scratch")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
