"""Side-by-side speed of the JAX and torch backends, in one process, interleaved.

    python bench/throughput.py [--data ../shared/data/movielens-1m-seed] [--repeats 5] [--json FILE]

For batch sizes 128 and 1024 it measures, alternating JAX, torch (fused
Adam, the reference's default) and torch with the for-each Adam (A B C A B C)
so that machine noise hits all alike:
  * training samples/s (train-mode steps over the training split tiled
    --tile times, so that one timing is long enough to trust);
  * evaluation samples/s (eval-mode logits over the same rows);
  * the wall time of one whole epoch on the real split, batching included;
and, once, JAX's first-call time (compilation + one block of steps), and the
tutorial's input path: the torch model fed by a per-row pandas `Dataset` and
a `DataLoader` (B = 128). It prints medians over the repeats and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from core.config import DINConfig  # noqa: E402
from data.batches import epoch_batches  # noqa: E402
from data.schema import LABEL, USER  # noqa: E402
from data.sources.tutorial import load_splits  # noqa: E402
from din_jax.backend import JaxBackend  # noqa: E402
from din_torch.backend import TorchBackend  # noqa: E402
from din_torch.steps import make_optimizer, train_step  # noqa: E402


class TutorialDataset(Dataset):
    """The tutorial's input path: one pandas row per item, read column by column with .iloc."""

    def __init__(self, arrays: dict[str, np.ndarray], schema):
        self.frame = pd.DataFrame({
            **{name: arrays[name] for name in schema.numeric},
            **{f.name: arrays[f.name] for f in schema.categorical},
            # Unpadded sequences, padded per item as the tutorial does.
            **{f.name: [row[row > 0] for row in arrays[f.name]] for f in schema.sequence},
            LABEL: arrays[LABEL],
        })
        self.schema = schema

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict:
        record = {}
        for name in self.schema.numeric:
            record[name] = self.frame[name].iloc[index].astype(np.float32)
        for f in self.schema.categorical:
            record[f.name] = self.frame[f.name].iloc[index].astype(np.int64)
        for f in self.schema.sequence:
            sequence = self.frame[f.name].iloc[index]
            padded = np.zeros(f.max_len, np.int64)
            padded[: len(sequence)] = sequence
            record[f.name] = padded
        record[LABEL] = self.frame[LABEL].iloc[index].astype(np.float32)
        return record


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tutorial_epoch(backend: TorchBackend, loader: DataLoader) -> None:
    for batch in loader:
        if len(batch[LABEL]) > 1:
            train_step(backend.model, backend.optimizer, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "movielens-1m-seed"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tile", type=int, default=8, help="copies of the training split per timed pass")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = DINConfig()
    splits = load_splits(args.data, config)
    schema = splits.encoders.schema()
    train = {k: v for k, v in splits.train.items() if k != USER}
    tiled = {k: np.concatenate([v] * args.tile) for k, v in train.items()}
    n, n_tiled = len(train[LABEL]), len(tiled[LABEL])
    host = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs"
    print(f"host: {host}; torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"jax {jax.__version__} on {jax.devices()}", flush=True)
    print(f"rows: {n} training rows (tiled x{args.tile}: {n_tiled}); medians of {args.repeats} interleaved repeats", flush=True)

    results: dict = {"host": host, "torch_threads": torch.get_num_threads(), "jax_devices": [str(d) for d in jax.devices()],
                     "repeats": args.repeats, "tile": args.tile, "batch_sizes": {}}
    for size in args.batch_sizes:
        cfg = config.replace(batch_size=size, eval_batch_size=size)
        backends = {"jax": JaxBackend(schema, cfg), "torch": TorchBackend(schema, cfg), "torch_foreach": TorchBackend(schema, cfg)}
        # The same model with torch's default (for-each) Adam instead of the fused one.
        backends["torch_foreach"].optimizer = make_optimizer(backends["torch_foreach"].model, cfg, fused=False)
        tiled_batches = epoch_batches(n_tiled, size, 0, 1)
        first = epoch_batches(n, size, 0, 1)
        compile_s = timed(lambda: backends["jax"].train_batches(train, first[:1], lambda _: None))
        for backend in backends.values():  # warm-up: compile every shape, fill caches
            backend.train_batches(tiled, tiled_batches, lambda _: None)
            backend.predict(tiled, size)
        samples = {name: {"train": [], "eval": [], "epoch_s": []} for name in backends}
        for repeat in range(args.repeats):
            for name, backend in backends.items():
                seconds = timed(lambda: backend.train_batches(tiled, tiled_batches, lambda _: None))
                samples[name]["train"].append(n_tiled / seconds)
                seconds = timed(lambda: backend.predict(tiled, size))
                samples[name]["eval"].append(n_tiled / seconds)
                # One real epoch, batching (shuffle and index arrays) included.
                seconds = timed(lambda: backend.train_batches(train, epoch_batches(n, size, 1, repeat + 2), lambda _: None))
                samples[name]["epoch_s"].append(seconds)
        row = {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}
        row["jax"]["first_call_s"] = compile_s
        results["batch_sizes"][str(size)] = row
        print(f"B={size}: jax first call (compile + 1 step) {compile_s:.1f} s", flush=True)

    # The tutorial's path: per-row Dataset + DataLoader, B = 128, torch model.
    tutorial_backend = TorchBackend(schema, config)
    loader = DataLoader(TutorialDataset(train, schema), batch_size=128, shuffle=True)
    tutorial_epoch(tutorial_backend, loader)  # warm-up
    tutorial_s = statistics.median(timed(lambda: tutorial_epoch(tutorial_backend, loader)) for _ in range(max(2, args.repeats // 2)))
    results["tutorial_loader_epoch_s_b128"] = tutorial_s

    b128, b1024 = results["batch_sizes"].get("128"), results["batch_sizes"].get("1024")
    ratios = {}
    for size, row in results["batch_sizes"].items():
        ratios[f"jax_over_torch_train_b{size}"] = row["jax"]["train"] / row["torch"]["train"]
        ratios[f"jax_over_torch_eval_b{size}"] = row["jax"]["eval"] / row["torch"]["eval"]
        ratios[f"jax_over_torch_epoch_b{size}"] = row["torch"]["epoch_s"] / row["jax"]["epoch_s"]
        ratios[f"jax_over_torch_foreach_adam_train_b{size}"] = row["jax"]["train"] / row["torch_foreach"]["train"]
    if b128:
        ratios["jax_epoch_speedup_over_tutorial_loader_b128"] = tutorial_s / b128["jax"]["epoch_s"]
        ratios["torch_epoch_speedup_over_tutorial_loader_b128"] = tutorial_s / b128["torch"]["epoch_s"]
    results["ratios"] = ratios

    print(f"\n{'batch':>5} {'backend':>13} {'train samples/s':>16} {'eval samples/s':>15} {'epoch s':>9}")
    for size, row in results["batch_sizes"].items():
        for name in ("jax", "torch", "torch_foreach"):
            r = row[name]
            print(f"{size:>5} {name:>13} {r['train']:>16,.0f} {r['eval']:>15,.0f} {r['epoch_s']:>9.3f}")
    print(f"{128:>5} {'tutorial':>13} {'(per-row DataLoader)':>32} {tutorial_s:>9.3f}")
    print()
    for key, value in ratios.items():
        print(f"{key:<48} {value:7.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
