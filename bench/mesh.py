"""JAX training speed on device meshes, side by side in one process.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/mesh.py [--repeats 5]

Trains the JAX backend on the seed data's training split (tiled --tile times)
on each mesh, interleaved (A B C A B C) so that machine noise hits all
alike, and prints the median training samples/s and the ratio to one
device. On a CPU host the "devices" share the same cores, so this measures
the cost of the partitioned program (collectives, per-device launches), not a
speed-up; on GPUs/TPUs each device is real hardware.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from core.config import DINConfig  # noqa: E402
from data.batches import epoch_batches  # noqa: E402
from data.sources.tutorial import load_splits  # noqa: E402

from din_jax.backend import JaxBackend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/movielens-1m-seed")
    parser.add_argument("--meshes", nargs="+", default=["data=1", "data=8", "data=4,model=2"])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = DINConfig(batch_size=args.batch_size, eval_batch_size=args.batch_size)
    splits = load_splits(args.data, config)
    train = {name: np.concatenate([values] * args.tile) for name, values in splits.train.items()}
    n = len(train["label"])
    batches = epoch_batches(n, args.batch_size, 0, 1)
    batches = [b for b in batches if len(b) == args.batch_size]
    samples = sum(len(b) for b in batches)
    backends = {}
    for text in args.meshes:
        backends[text] = JaxBackend(splits.encoders.schema(), config.replace(mesh=text, shard_embeddings="model" in text))
        backends[text].train_batches(train, batches[:16], lambda k: None)  # compile, data to devices
    times: dict[str, list[float]] = {text: [] for text in args.meshes}
    for _ in range(args.repeats):
        for text, backend in backends.items():
            start = time.perf_counter()
            backend.train_batches(train, batches, lambda k: None)  # ends with a host sync
            times[text].append(time.perf_counter() - start)
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}, B = {args.batch_size}, "
          f"{samples} samples per timing, median of {args.repeats}")
    base = samples / statistics.median(times[args.meshes[0]])
    print(f"{'mesh':<34}{'train samples/s':>18}{'vs ' + args.meshes[0]:>14}")
    for text in args.meshes:
        rate = samples / statistics.median(times[text])
        label = text + (" (sharded tables)" if "model" in text else "")
        print(f"{label:<34}{rate:>18,.0f}{rate / base:>13.2f}x")


if __name__ == "__main__":
    main()
