"""How the build, a training epoch and an evaluation scale with the ratings.

    python bench/scale.py --source ../shared/data/ml-latest-small [--sizes 1M,5M,20M] [--folder DIR] [--json FILE]
                          [--build local,beam] [--phases build,train,speed]

For each size it writes, once, a raw MovieLens CSV release of about that many
ratings into DIR by tiling the source's ratings.csv with fresh user ids
(movies.csv copied), then in fresh processes, one per phase (the figure is
that process's peak RSS):
  build  the sequential protocol's samples (history 50) from the raw files into
         an empty cache (data.datasets.load_splits): seconds, peak RSS, rows,
         the encoded arrays' size; with --build local,beam also the Beam
         pipeline (DirectRunner, --beam-workers processes) into an empty
         cache, its stages' worker-seconds and bytes handed on, and the ratio;
  train  one JAX epoch at B = 1024 from that cache (the input path the run
         picks by size: device-resident or streamed, say `input`), its first
         block (compilation) untimed: samples/s, peak RSS; then one evaluation of
         the validation split (logits, AUC, GAUC) after a warm-up batch: seconds;
  speed  training samples/s of every size side by side in one process, segments
         of 128 batches timed in turn (A B C A B C ...), medians of --repeats:
         the ratio to the first size, free of the machine's drift between runs.
Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BUILD = """
import json, os, time
from core.config import DINConfig
from data.datasets import build_key, load_splits
config, stages = DINConfig(), {{}}
start = time.perf_counter()
if {engine!r} == "beam":  # the Beam pipeline on the DirectRunner, its workers in processes of their own
    from data.beam import movielens as beam_build
    folder = os.path.join({cache!r}, "built", build_key({folder!r}, config))
    stages = beam_build.build({folder!r}, config, folder, "DirectRunner",
                              ("--direct_num_workers={workers}", "--direct_running_mode=multi_processing"))
splits = load_splits({folder!r}, config, cache_dir={cache!r})
seconds = time.perf_counter() - start
arrays = [a for s in ("train", "valid", "test") for a in getattr(splits, s).values()]
print(json.dumps({{"build_s": seconds, "rows": {{s: len(getattr(splits, s)["label"]) for s in ("train", "valid", "test")}},
                  "arrays_gb": sum(a.nbytes for a in arrays) / 2**30, "stages": stages}}))
"""

TRAIN = """
import json, time
import numpy as np
from core.config import DINConfig
from data.batches import epoch_batches
from data.datasets import load_splits
from data.schema import LABEL, USER
from training import metrics
from training.backend import make_backend
config = DINConfig(batch_size=1024, eval_batch_size=1024, input={input!r})
splits = load_splits({folder!r}, config, cache_dir={cache!r})
backend = make_backend("jax", splits.encoders.schema(), config)
batches = epoch_batches(len(splits.train[LABEL]), config.batch_size, config.seed, 1)
k = backend.steps_per_call
backend.train_batches(splits.train, batches[:k], lambda n: None)  # compiles
start = time.perf_counter()
losses = backend.train_batches(splits.train, batches[k:], lambda n: None)
seconds = time.perf_counter() - start
valid = splits.valid
backend.predict({{name: values[:1024] for name, values in valid.items()}}, 1024)  # compiles
start = time.perf_counter()
logits = backend.predict(valid, config.eval_batch_size)
scores = metrics.evaluate(valid[USER], valid[LABEL], logits)
eval_seconds = time.perf_counter() - start
print(json.dumps({{"train_samples_per_s": sum(len(b) for b in batches[k:]) / seconds, "epoch_s": seconds,
                  "input": backend.input_path, "eval_s": eval_seconds, "valid_auc": scores["auc"],
                  "valid_gauc": scores["gauc"], "final_loss": float(np.mean(losses[-100:]))}}))
"""

# Training speed side by side: one process, a backend per size, segments of
# the same length timed in turn (A B C A B C ...), medians.
SPEED = """
import json, statistics, time
from core.config import DINConfig
from data.batches import epoch_batches
from data.datasets import load_splits
from data.schema import LABEL
from training.backend import make_backend
config = DINConfig(batch_size=1024, eval_batch_size=1024, input={input!r})
runs = {{}}
for size, folder in {folders!r}.items():
    splits = load_splits(folder, config, cache_dir=folder + "/cache")
    train, backend = splits.train, make_backend("jax", splits.encoders.schema(), config)
    batches = epoch_batches(len(train[LABEL]), config.batch_size, config.seed, 1)
    backend.train_batches(train, batches[:backend.steps_per_call], lambda n: None)  # compiles
    runs[size] = (backend, train, batches[backend.steps_per_call:])
speeds = {{size: [] for size in runs}}
for repeat in range({repeats}):
    for size, (backend, train, batches) in runs.items():
        segment = batches[repeat * {segment} : (repeat + 1) * {segment}]
        start = time.perf_counter()
        backend.train_batches(train, segment, lambda n: None)
        speeds[size].append(sum(len(b) for b in segment) / (time.perf_counter() - start))
print(json.dumps({{size: {{"median": statistics.median(v), "all": v, "input": runs[size][0].input_path}} for size, v in speeds.items()}}))
"""


def parse_size(text: str) -> int:
    scale = {"K": 10**3, "M": 10**6}.get(text[-1].upper(), 1)
    return int(float(text[:-1] if text[-1].upper() in "KM" else text) * scale)


def tile(source: str, ratings: int, folder: str) -> int:
    """A CSV release of about `ratings` ratings: whole copies of the source's, each
    with fresh user ids. Returns the rating count; skips a folder already made."""
    marker = os.path.join(folder, "ratings-count.txt")
    if os.path.isfile(marker):
        return int(open(marker).read())
    frame = pd.read_csv(os.path.join(source, "ratings.csv"))
    copies = max(round(ratings / len(frame)), 1)
    offset = int(frame["userId"].max())
    work = tempfile.mkdtemp(prefix=".tile-", dir=os.path.dirname(os.path.abspath(folder)))
    with open(os.path.join(work, "ratings.csv"), "w", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for copy in range(copies):
            frame.assign(userId=frame["userId"] + copy * offset).to_csv(f, header=False, index=False)
    shutil.copy(os.path.join(source, "movies.csv"), work)
    with open(os.path.join(work, "ratings-count.txt"), "w") as f:
        f.write(str(copies * len(frame)))
    os.replace(work, folder)
    return copies * len(frame)


def child(code: str) -> dict:
    """Runs code in a fresh Python; its last stdout line (JSON) plus its peak RSS."""
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"a measurement failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1]) | {"peak_rss_gb": usage.ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a MovieLens CSV release (ratings.csv, movies.csv)")
    parser.add_argument("--sizes", default="1M,5M,20M")
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "din-scale"))
    parser.add_argument("--phases", default="build,train,speed")
    parser.add_argument("--repeats", type=int, default=5, help="speed phase: segments timed per size")
    parser.add_argument("--input", default="auto", choices=("auto", "device", "stream"), help="JAX's input path (--input)")
    parser.add_argument("--build", default="local", help="build phase: local, beam or local,beam (side by side)")
    parser.add_argument("--beam-workers", type=int, default=2, help="--build beam: DirectRunner worker processes")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.source, "ratings.csv")):
        raise SystemExit(f"--source {args.source}: no ratings.csv (a MovieLens CSV release, e.g. ml-latest-small)")
    os.makedirs(args.folder, exist_ok=True)
    results = []
    for size in args.sizes.split(","):
        folder = os.path.join(args.folder, f"ml-{size}")
        start = time.perf_counter()
        row = {"size": size, "ratings": tile(args.source, parse_size(size), folder)}
        print(f"{size}: {row['ratings']:,} ratings in {folder} ({time.perf_counter() - start:.0f} s)", flush=True)
        cache = os.path.join(folder, "cache")
        if "build" in args.phases:
            for engine in args.build.split(","):  # the last engine's entry stays for the train phase
                shutil.rmtree(cache, ignore_errors=True)
                build = child(BUILD.format(folder=folder, cache=cache, engine=engine, workers=args.beam_workers))
                key = "" if engine == "local" else f"_{engine}"
                row |= {f"build{key}_s": build["build_s"], f"build{key}_peak_rss_gb": build["peak_rss_gb"],
                        "rows": build["rows"], "arrays_gb": build["arrays_gb"]}
                if build["stages"]:
                    row[f"build{key}_stages"] = build["stages"]
                print(f"  build ({engine}) {build['build_s']:.1f} s, peak RSS {build['peak_rss_gb']:.2f} GB (largest "
                      f"process), arrays {build['arrays_gb']:.2f} GB, rows {build['rows']}", flush=True)
                for stage, figures in build["stages"].items():
                    print(f"    {stage}: {figures.get('calls', 0)} calls, {figures.get('seconds', 0):.1f} worker-s, "
                          f"{figures.get('bytes', 0) / 2**20:,.0f} MB handed on", flush=True)
            if "build_beam_s" in row and "build_s" in row:
                row["beam_over_local_s"] = row["build_beam_s"] / row["build_s"]
                print(f"  beam / local build time: {row['beam_over_local_s']:.2f}", flush=True)
        if "train" in args.phases:
            train = child(TRAIN.format(folder=folder, cache=cache, input=args.input))
            row |= {key: train[key] for key in ("train_samples_per_s", "epoch_s", "input", "eval_s", "valid_auc", "valid_gauc")}
            row["train_peak_rss_gb"] = train["peak_rss_gb"]
            print(f"  epoch ({train['input']}) {train['train_samples_per_s']:,.0f} samples/s, {train['epoch_s']:.0f} s, "
                  f"peak RSS {train['peak_rss_gb']:.2f} GB; evaluation {train['eval_s']:.1f} s", flush=True)
        results.append(row)
    speed = None
    if "speed" in args.phases:
        folders = {size: os.path.join(args.folder, f"ml-{size}") for size in args.sizes.split(",")}
        speed = child(SPEED.format(folders=folders, input=args.input, repeats=args.repeats, segment=128))
        first = args.sizes.split(",")[0]
        print(f"\ntraining samples/s side by side (segments of 128 batches of 1024, medians of {args.repeats}):")
        for size in folders:
            print(f"  {size} ({speed[size]['input']}): {speed[size]['median']:,.0f} "
                  f"({speed[size]['median'] / speed[first]['median']:.2f} x {first})")
    print("\n| ratings | build (s) | build peak RSS (GB) | arrays (GB) | input | train samples/s | train+eval peak RSS (GB) | eval (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['ratings']:,} | {r.get('build_s', float('nan')):.1f} | {r.get('build_peak_rss_gb', float('nan')):.2f} | "
              f"{r.get('arrays_gb', float('nan')):.2f} | {r.get('input', '-')} | {r.get('train_samples_per_s', float('nan')):,.0f} | "
              f"{r.get('train_peak_rss_gb', float('nan')):.2f} | {r.get('eval_s', float('nan')):.1f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": {"cpus": os.cpu_count()}, "results": results, "speed_side_by_side": speed}, f, indent=2)


if __name__ == "__main__":
    main()
