"""Serving speed of a trained run: live JAX, live torch, and the three exported artifacts.

    python bench/serving.py RUN_DIR [--calls 1000] [--json FILE]

Exports RUN_DIR to StableHLO, .pt2 and ONNX (in a temporary folder), then,
interleaving the five engines call by call so that machine noise hits all
alike, measures
  * single-request latency: B = 1, p50 and p99 over --calls calls;
  * throughput: B = 1024, rows/s from the median of --throughput-calls calls.
Inputs are random valid encoded rows (parity/synthetic.py); the time is the
call from numpy inputs to numpy probabilities, as a server would see it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from jax import export as jax_export  # noqa: E402

from inference import load_run  # noqa: E402
from inference.export import export_run  # noqa: E402
from parity.synthetic import random_batch  # noqa: E402


def engines(run_dir: str, folder: str) -> dict:
    """name -> f(list of numpy inputs in schema order) -> numpy probabilities."""
    live = {backend: load_run(run_dir, backend) for backend in ("jax", "torch")}
    names = live["jax"].schema.inputs
    for fmt in ("stablehlo", "torch", "onnx"):
        export_run(run_dir, fmt, os.path.join(folder, fmt))
    with open(os.path.join(folder, "stablehlo", "model.stablehlo"), "rb") as f:
        stablehlo = jax.jit(jax_export.deserialize(bytearray(f.read())).call)
    pt2 = torch.export.load(os.path.join(folder, "torch", "model.pt2")).module()
    session = onnxruntime.InferenceSession(os.path.join(folder, "onnx", "model.onnx"), providers=["CPUExecutionProvider"])

    def live_call(model):
        return lambda xs: model.predictor(dict(zip(names, xs)))[0]

    def pt2_call(xs):
        with torch.no_grad():
            return pt2(*(torch.from_numpy(x) for x in xs)).numpy()

    return {
        "live JAX (jit)": live_call(live["jax"]),
        "live torch (eager)": live_call(live["torch"]),
        "StableHLO (jax.export)": lambda xs: np.asarray(stablehlo(*xs)),
        "torch.export .pt2": pt2_call,
        "ONNX Runtime": lambda xs: session.run(None, dict(zip(names, xs)))[0],
    }, live["jax"].schema


def measure(calls: dict, inputs: list, count: int) -> dict[str, np.ndarray]:
    """Seconds per call, interleaved across engines; a warm-up first."""
    for fn in calls.values():
        for _ in range(10):
            fn(inputs)
    times = {name: np.zeros(count) for name in calls}
    for i in range(count):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn(inputs)
            times[name][i] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--throughput-calls", type=int, default=50)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        calls, schema = engines(args.run_dir, folder)
        rng = np.random.default_rng(0)
        single = [random_batch(schema, 1, rng)[name] for name in schema.inputs]
        large = [random_batch(schema, 1024, rng)[name] for name in schema.inputs]
        latency = measure(calls, single, args.calls)
        throughput = measure(calls, large, args.throughput_calls)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "devices": str(jax.devices()[0].device_kind),
        "torch_threads": torch.get_num_threads(),
        "engines": {
            name: {
                "p50_ms": 1e3 * float(np.percentile(latency[name], 50)),
                "p99_ms": 1e3 * float(np.percentile(latency[name], 99)),
                "rows_per_s_b1024": 1024 / float(np.median(throughput[name])),
            }
            for name in calls
        },
    }
    print(f"{result['machine']}; torch threads {result['torch_threads']}; B = 1 over {args.calls} calls, "
          f"B = 1024 median of {args.throughput_calls}")
    print("| engine | B=1 p50 (ms) | B=1 p99 (ms) | B=1024 rows/s |")
    print("|---|---|---|---|")
    for name, row in result["engines"].items():
        print(f"| {name} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['rows_per_s_b1024']:,.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
