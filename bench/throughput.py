"""Side-by-side speed of the JAX and torch backends, in one process, interleaved,
with what each step costs and what this machine can do beside it.

    python bench/throughput.py [--data DIR] [--dataset FILE] [--max-hist N] [--preset NAME] [--set FIELD=VALUE ...]
                               [--repeats 5] [--json FILE]
    python bench/throughput.py --electronics DIR     # an Electronics-shaped Amazon release (synthetic)
    python bench/throughput.py --data DIR --from RUN # also from a trained run's weights
    python bench/throughput.py --data DIR --trained-epochs 3  # also after 3 epochs of the data

--data takes any folder the trainer reads (default: the tutorial's split,
T = 10); raw MovieLens builds its sequential protocol (T = 50) into the cache
once. The model has the sizes train.py gives that data (the paper's on raw
MovieLens in the sequential protocol) unless --preset says. --electronics
writes a synthetic Amazon release with Electronics' users, items and
long-tailed history lengths (tests/synthetic_amazon.py, at
--electronics-scale of the real 192,403 users) into DIR once and reads it in
the authors' protocol with histories of up to 100 items.

For batch sizes 128 and 1024 it measures, alternating JAX (its attention rows
provisioned from the training split's lengths, as train.py does), JAX with
every history position a row (`jax_padded`: history_share 1, the padded
computation), torch (fused Adam, the reference's default), torch compiled by
`torch.compile` (inductor, the peer a user who wants speed from PyTorch
picks; its compile time reported apart) and torch with the for-each Adam
(A B C D E A B C D E) so that machine noise hits all alike:
  * training samples/s (train-mode steps over the training split tiled to
    about --rows rows, so that one timing is long enough to trust, or a
    random sample of --rows of its rows when it has more than twice that);
  * evaluation samples/s (eval-mode logits over the same rows; on a CPU a
    big batch runs in cache-sized chunks of every position, din_jax/chunks.py,
    so `jax` and `jax_padded` then evaluate with the same program);
  * the wall time of one whole epoch on the real split, batching included;
then, with --from RUN or --trained-epochs K, the training and evaluation
rates of jax, torch and torch_compiled again from that trained state
(`train_trained`, `eval_trained`): weights that decayed towards zero compute
on subnormal floats, which a CPU runs at a fraction of its speed unless they
are flushed (XLA does; the torch backend sets torch.set_flush_denormal); and, once, JAX's first-call time (compilation + one block of steps), the
steps' cost per sample (bench/roofline.py: XLA's cost analysis for JAX,
torch's FLOP counter) and this machine's matmul rate and memory bandwidth,
and the fraction of them each backend's rate reaches, and the JAX train
step's passes over arrays too big for a cache (bench/roofline.py
big_passes); on the tutorial's
split also the tutorial's input path: the torch model fed by a per-row pandas
`Dataset` and a `DataLoader` (B = 128). It prints medians over the repeats
and the ratios.
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
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from din_jax import packing  # noqa: E402
from core.config import PRESETS, DINConfig  # noqa: E402
from data.batches import epoch_batches  # noqa: E402
from data.schema import LABEL, USER  # noqa: E402
from data.datasets import load_splits  # noqa: E402
from training.resolve import data_defaults  # noqa: E402
from din_jax.backend import JaxBackend  # noqa: E402
from din_jax.chunks import eval_chunk  # noqa: E402
from din_torch.backend import TorchBackend  # noqa: E402
from din_torch.steps import make_optimizer  # noqa: E402
from inference.convert import names_to_torch, to_names, torch_to_flax  # noqa: E402
from training.run_dir import read_run  # noqa: E402

import roofline  # noqa: E402  (bench/roofline.py)
from quality import parse_setting  # noqa: E402  (bench/quality.py)
from tutorial_input import TutorialDataset, tutorial_epoch  # noqa: E402  (bench/tutorial_input.py)

ELECTRONICS = {"users": 192_403, "items": 63_001, "reviews": 1_689_188}  # the 5-core release


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compiled(backend: TorchBackend) -> TorchBackend:
    """The backend's model compiled by torch.compile (inductor); `backend.module` keeps the plain module."""
    backend.module = backend.model
    backend.model = torch.compile(backend.model)
    return backend


def load_trained(backend, weights: dict[str, np.ndarray], trained_by: str, config: DINConfig) -> None:
    """Loads a run's weights (named by the backend that trained them) into `backend`."""
    if isinstance(backend, JaxBackend):
        if trained_by == "torch":
            from din_jax.inference import variable_shapes

            weights = to_names(torch_to_flax(weights, variable_shapes(backend.schema, config)))
        backend.load_weights(weights)
    else:
        state = names_to_torch(weights) if trained_by == "jax" else weights
        getattr(backend, "module", backend.model).load_state_dict({k: torch.from_numpy(np.asarray(v))
                                                                  for k, v in state.items()}, strict=True)


def electronics_release(folder: str, scale: float) -> str:
    """A synthetic Amazon release with Electronics' shape, written into `folder` once."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from synthetic_amazon import make_reviews, write_amazon

    if not os.path.isfile(os.path.join(folder, "meta_Electronics.json.gz")):
        sizes = {k: max(int(v * scale), 10) for k, v in ELECTRONICS.items()}
        write_amazon(folder, make_reviews(sizes["users"], sizes["items"], sizes["reviews"]), sizes["items"])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "movielens-1m-seed"))
    parser.add_argument("--dataset", default="", help="a dataset file for --data")
    parser.add_argument("--electronics", metavar="DIR", help="bench an Electronics-shaped synthetic release, kept in DIR")
    parser.add_argument("--electronics-scale", type=float, default=0.1, help="its size, a fraction of Electronics'")
    parser.add_argument("--max-hist", type=int, help="history length of built sources (default 50; 100 with --electronics)")
    parser.add_argument("--cache-dir", help="where built datasets live (default: the trainer's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=40_000, help="rows per timed pass (the training split, tiled)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="model sizes (default: the data's, as train.py's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="DINConfig changes, e.g. mask_padding=true attention_dropout=0")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--from", dest="run", metavar="RUN",
                        help="also time every backend from this finished run's weights (trained on --data)")
    parser.add_argument("--trained-epochs", type=int, default=0, metavar="K",
                        help="also time every backend from the weights JAX reaches after K epochs of --data")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = electronics_release(args.electronics, args.electronics_scale) if args.electronics else args.data
    max_hist = args.max_hist or (100 if args.electronics else DINConfig().max_hist)
    chosen = dict(dataset=args.dataset, max_hist=max_hist) | (PRESETS[args.preset] if args.preset else {})
    settings = dict(map(parse_setting, args.set))
    chosen |= settings
    config = data_defaults("jax", data, DINConfig(**chosen), chosen)  # the sizes train.py would train with
    trained = None
    if args.run:  # the run's own settings, so that its weights fit
        run_config, _, run_weights, trained_by = read_run(args.run)
        config, trained = run_config, (run_weights, trained_by)
    splits = load_splits(data, config, args.cache_dir)
    schema = splits.encoders.schema()
    train = {k: np.asarray(v) for k, v in splits.train.items() if k != USER}
    if len(train[LABEL]) > 2 * args.rows:  # a random sample of rows, lengths as in the whole split
        keep = np.sort(np.random.default_rng(0).choice(len(train[LABEL]), args.rows, replace=False))
        train = {k: v[keep] for k, v in train.items()}
    n = len(train[LABEL])
    tile = max(1, round(args.rows / n))
    tiled = {k: np.concatenate([v] * tile) for k, v in train.items()}
    n_tiled = len(tiled[LABEL])
    history = {f.name: f.max_len for f in schema.sequence}
    real = {f.name: float((train[f.name] > 0).sum(axis=1).mean()) for f in schema.sequence}
    host = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs"
    print(f"host: {host}; torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"jax {jax.__version__} on {jax.devices()}", flush=True)
    print(f"data: {data}; histories {history}, real positions {real} on average", flush=True)
    sizes = {name: getattr(config, name) for name in PRESETS["paper"]} | settings
    print("model: " + ", ".join(f"{name} {value}" for name, value in sizes.items()), flush=True)
    print(f"rows: {n} training rows (tiled x{tile}: {n_tiled}); medians of {args.repeats} interleaved repeats", flush=True)
    limits = roofline.machine()
    print("machine: " + ", ".join(f"{k} {v:.1f}" for k, v in limits.items()), flush=True)

    results: dict = {"host": host, "data": data, "history": history, "real_positions": real, "model": sizes,
                     "torch_threads": torch.get_num_threads(), "jax_devices": [str(d) for d in jax.devices()],
                     "repeats": args.repeats, "tile": tile, "machine": limits, "batch_sizes": {}}
    if args.trained_epochs:  # JAX trains K epochs; every backend then starts from its weights
        teacher = JaxBackend(schema, packing.resolve(config, schema, train))
        for epoch in range(1, args.trained_epochs + 1):
            teacher.train_batches(train, epoch_batches(n, config.batch_size, 0, epoch), lambda _: None)
        trained = (teacher.weights(), "jax")
    if trained:
        tiny = sum(int((np.abs(w) < np.finfo(np.float32).tiny).sum() - (w == 0).sum())
                   for w in trained[0].values() if np.issubdtype(np.asarray(w).dtype, np.floating))
        results["trained_subnormal_weights"] = tiny
        print(f"trained state: {args.run or f'{args.trained_epochs} JAX epochs'}; {tiny} subnormal weights", flush=True)
    for size in args.batch_sizes:
        cfg = config.replace(batch_size=size, eval_batch_size=size)
        # JAX's attention rows as train.py provisions them (from the training split's
        # lengths), and every position a row (history_share 1: the padded computation).
        packed = packing.resolve(cfg, schema, train)
        backends = {"jax": JaxBackend(schema, packed), "jax_padded": JaxBackend(schema, cfg.replace(history_share=1.0)),
                    "torch": TorchBackend(schema, cfg), "torch_compiled": compiled(TorchBackend(schema, cfg)),
                    "torch_foreach": TorchBackend(schema, cfg)}
        # The same model with torch's default (for-each) Adam instead of the fused one.
        backends["torch_foreach"].optimizer = make_optimizer(backends["torch_foreach"].model, cfg, fused=False)
        costs = {name: roofline.jax_step_costs(backends[name], train, size) for name in ("jax", "jax_padded")}
        passes = {name: costs[name].pop("train_passes") for name in ("jax", "jax_padded")}
        torch_flops = roofline.torch_step_flops(backends["torch"], train, size)
        costs["torch"] = costs["torch_foreach"] = costs["torch_compiled"] = {
            mode: {"flops": flops} for mode, flops in torch_flops.items()}
        tiled_batches = epoch_batches(n_tiled, size, 0, 1)
        first = epoch_batches(n, size, 0, 1)
        compile_s = timed(lambda: backends["jax"].train_batches(train, first[:1], lambda _: None))
        torch_compile_s = timed(lambda: (backends["torch_compiled"].train_batches(train, first[:1], lambda _: None),
                                         backends["torch_compiled"].predict({k: v[:size] for k, v in train.items()},
                                                                            size)))
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
        if trained:
            timed_again = ("jax", "torch", "torch_compiled")
            for name in timed_again:
                load_trained(backends[name], *trained, cfg)
                backends[name].train_batches(tiled, tiled_batches[:8], lambda _: None)  # warm-up
                samples[name] |= {"train_trained": [], "eval_trained": []}
            for repeat in range(args.repeats):
                for name in timed_again:
                    backend = backends[name]
                    seconds = timed(lambda: backend.train_batches(tiled, tiled_batches, lambda _: None))
                    samples[name]["train_trained"].append(n_tiled / seconds)
                    samples[name]["eval_trained"].append(n_tiled / timed(lambda: backend.predict(tiled, size)))
        row = {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}
        for name in row:
            row[name]["cost_per_sample"] = costs[name]
            row[name]["limit"] = {mode: roofline.fractions(row[name][mode], costs[name][mode], limits)
                                  for mode in ("train", "eval")}
        for name, counted in passes.items():
            row[name]["train_passes"] = counted
        row["jax"]["first_call_s"] = compile_s
        row["torch_compiled"]["first_call_s"] = torch_compile_s
        row["jax"]["history_share"] = packed.history_share
        # On a CPU a big eval batch runs in chunks of every position (din_jax/chunks.py),
        # so there jax and jax_padded evaluate with the same program.
        row["jax"]["eval_chunk"] = eval_chunk(schema, packed.model, size)
        results["batch_sizes"][str(size)] = row
        chunked = f"; eval in chunks of {row['jax']['eval_chunk']} rows" if row["jax"]["eval_chunk"] else ""
        print(f"B={size}: jax first call (compile + 1 step) {compile_s:.1f} s{chunked}; torch.compile first "
              f"calls (compile + 1 step + 1 eval batch) {torch_compile_s:.1f} s", flush=True)
        big = passes["jax"]
        from_memory_ms = (big["read"] + big["written"]) / limits["bandwidth_gbs"] / 1e6
        print(f"B={size}: jax train step: {big['ops']} ops pass over arrays of {big['threshold'] >> 20} MiB or more, "
              f"reading {big['read'] / 2**20:,.0f} MiB and writing {big['written'] / 2**20:,.0f} MiB of them "
              f"({from_memory_ms:,.1f} ms at the measured bandwidth were none in cache)", flush=True)

    if n <= 50_000:  # The tutorial's path: per-row Dataset + DataLoader, B = 128, torch model.
        tutorial_backend = TorchBackend(schema, config)
        loader = DataLoader(TutorialDataset(train, schema), batch_size=128, shuffle=True)
        tutorial_epoch(tutorial_backend, loader)  # warm-up
        tutorial_s = statistics.median(timed(lambda: tutorial_epoch(tutorial_backend, loader))
                                       for _ in range(max(2, args.repeats // 2)))
        results["tutorial_loader_epoch_s_b128"] = tutorial_s
    else:
        tutorial_s = None

    b128 = results["batch_sizes"].get("128")
    ratios = {}
    for size, row in results["batch_sizes"].items():
        ratios[f"jax_over_torch_train_b{size}"] = row["jax"]["train"] / row["torch"]["train"]
        ratios[f"jax_over_torch_eval_b{size}"] = row["jax"]["eval"] / row["torch"]["eval"]
        ratios[f"jax_over_torch_epoch_b{size}"] = row["torch"]["epoch_s"] / row["jax"]["epoch_s"]
        ratios[f"jax_over_compiled_torch_train_b{size}"] = row["jax"]["train"] / row["torch_compiled"]["train"]
        ratios[f"jax_over_compiled_torch_eval_b{size}"] = row["jax"]["eval"] / row["torch_compiled"]["eval"]
        ratios[f"jax_over_torch_foreach_adam_train_b{size}"] = row["jax"]["train"] / row["torch_foreach"]["train"]
        for name in ("jax", "torch", "torch_compiled"):
            if "train_trained" in row[name]:
                ratios[f"{name}_trained_over_init_train_b{size}"] = row[name]["train_trained"] / row[name]["train"]
                ratios[f"{name}_trained_over_init_eval_b{size}"] = row[name]["eval_trained"] / row[name]["eval"]
        ratios[f"jax_packed_over_padded_train_b{size}"] = row["jax"]["train"] / row["jax_padded"]["train"]
        ratios[f"jax_packed_over_padded_eval_b{size}"] = row["jax"]["eval"] / row["jax_padded"]["eval"]
    if b128 and tutorial_s:
        ratios["jax_epoch_speedup_over_tutorial_loader_b128"] = tutorial_s / b128["jax"]["epoch_s"]
        ratios["torch_epoch_speedup_over_tutorial_loader_b128"] = tutorial_s / b128["torch"]["epoch_s"]
    results["ratios"] = ratios

    print(f"\n{'batch':>5} {'backend':>13} {'train samples/s':>16} {'eval samples/s':>15} {'epoch s':>9}"
          f" {'train kFLOP/sample':>19} {'train KB/sample':>16} {'GFLOP/s':>8} {'of matmul':>10} {'of bandwidth':>13}")
    for size, row in results["batch_sizes"].items():
        for name in ("jax", "jax_padded", "torch", "torch_compiled", "torch_foreach"):
            r = row[name]
            cost, limit = r["cost_per_sample"]["train"], r["limit"]["train"]
            kb = f"{cost['bytes'] / 1e3:>16.0f}" if "bytes" in cost else f"{'-':>16}"
            of_bandwidth = f"{limit['of_bandwidth']:>13.1%}" if "of_bandwidth" in limit else f"{'-':>13}"
            print(f"{size:>5} {name:>13} {r['train']:>16,.0f} {r['eval']:>15,.0f} {r['epoch_s']:>9.3f}"
                  f" {cost['flops'] / 1e3:>19.0f} {kb} {limit['gflops']:>8.2f} {limit['of_attention_matmul']:>10.1%}"
                  f" {of_bandwidth}")
    if tutorial_s:
        print(f"{128:>5} {'tutorial':>13} {'(per-row DataLoader)':>32} {tutorial_s:>9.3f}")
    print("(torch counts FLOPs of matrix products only, and no bytes; JAX's are XLA's cost analysis)")
    if trained:
        print(f"\nfrom the trained state: {'batch':>5} {'backend':>15} {'train samples/s':>16} {'eval samples/s':>15}")
        for size, row in results["batch_sizes"].items():
            for name in ("jax", "torch", "torch_compiled"):
                print(f"{'':>23} {size:>5} {name:>15} {row[name]['train_trained']:>16,.0f} "
                      f"{row[name]['eval_trained']:>15,.0f}")
    print()
    for key, value in ratios.items():
        print(f"{key:<48} {value:7.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
