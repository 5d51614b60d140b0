"""One command for an accelerator (a GPU or TPU, when there is one): is it
right there, how fast, and how near the device's limits.

    python bench/device.py [--data DIR] [--batch-sizes 1024 4096 16384 65536] [--json FILE]
    python bench/device.py --tiny --json out.json     # the CPU test's sizes (tests/test_device_bench.py)

1. Parity on the device: the float32 twins (parity/compare.py) with JAX on the
   default device and torch on the CPU, forward in both modes and gradients,
   on random batches of the real shape; the largest difference per kind.
2. Throughput at each batch size, at two shapes: raw MovieLens in the
   sequential protocol (--data, or a synthetic ml-latest-small-shaped release:
   histories of 50, two attention groups, the user id, the paper's sizes and
   softmax) and an Electronics-shaped Amazon release (histories of 100,
   tests/synthetic_amazon.py): training and evaluation samples/s, the JAX
   backend as train.py runs it, medians of --repeats.
3. XLA's cost analysis of the train and eval steps (FLOPs and bytes per
   sample) against the device's peak (a table of known devices' dense
   float32 and bfloat16 FLOP/s and memory bandwidth; on a CPU, its measured
   matmul rate and bandwidth, bench/roofline.py).
Everything goes into one JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the synthetic releases

import jax  # noqa: E402

from din_jax import packing  # noqa: E402
from core.config import DINConfig  # noqa: E402
from data.batches import epoch_batches  # noqa: E402
from data.datasets import load_splits  # noqa: E402
from training.resolve import data_defaults  # noqa: E402
from data.schema import LABEL, USER  # noqa: E402
from din_jax.backend import JaxBackend  # noqa: E402
from parity.compare import Twins  # noqa: E402

import roofline  # noqa: E402  (bench/roofline.py)

# Dense peaks per device kind (float32 FLOP/s without tensor cores, bfloat16
# FLOP/s on tensor cores or the MXU, HBM bytes/s), from the vendors' sheets.
PEAKS = {
    "H100": {"float32_tflops": 67.0, "bfloat16_tflops": 989.0, "bandwidth_gbs": 3350.0},
    "H200": {"float32_tflops": 67.0, "bfloat16_tflops": 989.0, "bandwidth_gbs": 4800.0},
    "A100": {"float32_tflops": 19.5, "bfloat16_tflops": 312.0, "bandwidth_gbs": 2039.0},
    "TPU v4": {"float32_tflops": 275.0, "bfloat16_tflops": 275.0, "bandwidth_gbs": 1200.0},
    "TPU v5e": {"float32_tflops": 197.0, "bfloat16_tflops": 197.0, "bandwidth_gbs": 819.0},
}


def device_peaks() -> dict[str, float]:
    """The default device's peaks: the table's where its kind is known, else measured (a CPU)."""
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAKS.items():
        if name.lower() in kind.lower():
            return {"source": f"table: {name}", **peaks}
    measured = roofline.machine()
    return {"source": f"measured on {kind}", "float32_tflops": measured["matmul_square_gflops"] / 1e3,
            "bandwidth_gbs": measured["bandwidth_gbs"]}


def movielens_shape(data: str | None, workdir: str, tiny: bool) -> str:
    if data:
        return data
    from synthetic_movielens import make_world, write_csv_release

    users, movies = (60, 40) if tiny else (600, 3000)
    return write_csv_release(make_world(users=users, movies=movies, per_user=(20, 160)), os.path.join(workdir, "ml"))


def electronics_shape(workdir: str, tiny: bool) -> str:
    from synthetic_amazon import make_reviews, write_amazon

    users, items, reviews = (80, 400, 800) if tiny else (19_240, 6_300, 168_919)  # a tenth of Electronics
    folder = os.path.join(workdir, "electronics")
    return write_amazon(folder, make_reviews(users, items, reviews), items)


def parity_on_device(splits, config: DINConfig, rows: int) -> dict[str, float]:
    """The largest |torch - JAX| per kind of output, JAX on the default device, torch on the CPU."""
    schema = splits.encoders.schema()
    twins = Twins(schema, config.replace(attention_dropout=0.0, mlp_dropout=0.0), "float32")
    batch = twins.batch(splits.train, np.arange(min(rows, len(splits.train[LABEL]))))
    worst: dict[str, float] = {}
    for kind, diffs in (("forward_train", twins.forward(batch, train=True)),
                        ("forward_eval", twins.forward(batch, train=False)), ("gradients", twins.gradients(batch))):
        worst[kind] = max(d.max_abs for d in diffs)
        worst[f"{kind}_within_tolerance"] = all(d.ok for d in diffs)
    return worst


def throughput(splits, config: DINConfig, size: int, repeats: int) -> dict:
    schema = splits.encoders.schema()
    train = {k: np.asarray(v) for k, v in splits.train.items() if k != USER}
    n = len(train[LABEL])
    tile = max(1, -(-4 * size // n))  # at least four batches a pass
    tiled = {k: np.concatenate([v] * tile) for k, v in train.items()}
    n_tiled = len(tiled[LABEL])
    cfg = packing.resolve(config.replace(batch_size=size, eval_batch_size=size), schema, train)
    backend = JaxBackend(schema, cfg)
    batches = epoch_batches(n_tiled, size, 0, 1)
    start = time.perf_counter()
    backend.train_batches(tiled, batches[:1], lambda _: None)
    first_call = time.perf_counter() - start
    backend.train_batches(tiled, batches, lambda _: None)  # warm
    backend.predict(tiled, size)
    rates = {"train": [], "eval": []}
    for _ in range(repeats):
        start = time.perf_counter()
        backend.train_batches(tiled, batches, lambda _: None)
        rates["train"].append(sum(map(len, batches)) / (time.perf_counter() - start))
        start = time.perf_counter()
        backend.predict(tiled, size)
        rates["eval"].append(n_tiled / (time.perf_counter() - start))
    costs = roofline.jax_step_costs(backend, tiled, size)
    costs.pop("train_passes")
    row = {mode: statistics.median(values) for mode, values in rates.items()}
    return {"train_samples_per_s": row["train"], "eval_samples_per_s": row["eval"], "first_call_s": first_call,
            "history_share": cfg.history_share, "cost_per_sample": costs}


def against_peaks(row: dict, peaks: dict, dtype: str) -> dict:
    out = {}
    peak = peaks.get(f"{dtype}_tflops", peaks["float32_tflops"]) * 1e12
    for mode in ("train", "eval"):
        cost, rate = row["cost_per_sample"][mode], row[f"{mode}_samples_per_s"]
        out[f"{mode}_of_peak_flops"] = rate * cost["flops"] / peak
        out[f"{mode}_bytes_over_bandwidth"] = rate * cost.get("bytes", 0.0) / (peaks["bandwidth_gbs"] * 1e9)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a raw MovieLens folder (default: a synthetic one of ml-latest-small's shape)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--tiny", action="store_true", help="tiny data and sizes: the CPU test's")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    batch_sizes = [16, 32] if args.tiny else args.batch_sizes
    devices = jax.devices()
    results: dict = {"device": f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})",
                     "jax": jax.__version__, "dtype": args.dtype, "peaks": device_peaks(), "shapes": {}}
    print(f"device: {results['device']}; peaks: {results['peaks']}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        shapes = {"movielens": (movielens_shape(args.data, workdir, args.tiny), {}),
                  "electronics": (electronics_shape(workdir, args.tiny), {"max_hist": 100})}
        for name, (folder, settings) in shapes.items():
            chosen = settings | {"dtype": args.dtype} | ({"min_count": 1} if args.tiny else {})
            config = data_defaults("jax", folder, DINConfig(**chosen), chosen)
            splits = load_splits(folder, config, os.path.join(workdir, "cache"))
            shape = {"parity": parity_on_device(splits, config, 64), "batch_sizes": {}}
            print(f"{name}: parity on the device {shape['parity']}", flush=True)
            for size in batch_sizes:
                row = throughput(splits, config, size, 1 if args.tiny else args.repeats)
                row |= against_peaks(row, results["peaks"], args.dtype)
                shape["batch_sizes"][str(size)] = row
                print(f"{name} B={size}: train {row['train_samples_per_s']:,.0f} samples/s "
                      f"({row['train_of_peak_flops']:.1%} of peak FLOP/s, {row['train_bytes_over_bandwidth']:.2f}x the "
                      f"bandwidth in bytes accessed, above 1 where caches serve), eval {row['eval_samples_per_s']:,.0f} samples/s", flush=True)
            results["shapes"][name] = shape
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
