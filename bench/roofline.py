"""What a step costs and what this machine can do, for bench/throughput.py.

  step_costs    FLOPs and bytes per sample of the JAX train and eval steps
                at batch size B, from XLA's own cost analysis of the compiled
                programs; FLOPs of the torch steps from torch's FlopCounterMode
                (matrix products only: torch counts no elementwise work, and
                no bytes)
  machine       this machine's measured limits, in the same run: XLA matmul
                FLOP/s on an attention-shaped product and on a large square
                one, and memory bandwidth from a 64 MB elementwise pass
  fractions     a measured samples/s against those limits: the FLOP/s and
                bytes/s it implies, as a fraction of the matmul rate and of
                the bandwidth (the bound a memory-bound step meets first)
  big_passes    the passes a compiled step makes over arrays too big for a
                cache: its ops that read or write one, and the bytes of them
                they move (XLA's "bytes accessed" counts every operand, small
                ones that stay in cache too)
"""

from __future__ import annotations

import functools
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from data.schema import LABEL
from din_jax.steps import eval_step, one_batch, train_step
from din_torch.input import to_tensors
from din_torch.steps import train_step as torch_train_step


def _cost(compiled) -> dict[str, float]:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX: one dict per program
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0))}


_ITEM_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
               "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}
_ARRAY = re.compile(r"\b(pred|bf16|[fsu]\d+)\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*?)\)")
_NO_PASS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}  # no data moved


def _array_bytes(shape: str) -> int:
    """Bytes of every array in an HLO shape ("f32[8,4]{1,0}", or a tuple of them)."""
    return sum(_ITEM_BYTES.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
               for dtype, dims in _ARRAY.findall(shape))


def big_passes(compiled, threshold: int = 4 << 20) -> dict[str, float]:
    """{'ops', 'read', 'written'}: the ops of the compiled program's entry
    computation that read or write an array of `threshold` bytes or more, and
    the bytes of such arrays they read and write. XLA:CPU runs each fusion as
    its own loop, so each of these is a pass over the array: over memory,
    (read + written) / bandwidth, where it does not fit the last-level cache,
    less where it does. Fusing ops into fewer loops lowers the count."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY"):]
    entry = entry[: entry.index("\n}")]
    sizes: dict[str, int] = {}
    ops, read, written = 0, 0, 0
    for line in entry.split("\n")[1:]:
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode, operands = match.groups()
        sizes[name] = _array_bytes(shape)
        if opcode in _NO_PASS:
            continue
        big_in = [sizes.get(operand.strip().lstrip("%"), 0) for operand in operands.split(",")]
        big_in = sum(b for b in big_in if b >= threshold)
        big_out = sizes[name] if sizes[name] >= threshold else 0
        if big_in or big_out:
            ops, read, written = ops + 1, read + big_in, written + big_out
    return {"ops": ops, "read": read, "written": written, "threshold": threshold}


def jax_step_costs(backend, data: dict[str, np.ndarray], size: int) -> dict[str, dict[str, float]]:
    """{'train' | 'eval': {'flops', 'bytes'}} per sample, of one step on `size`
    rows; 'train_passes': big_passes of the train step (per step)."""
    batch = {name: jnp.asarray(data[name][:size]) for name in (*backend.inputs, LABEL)}
    # A batch that fits the attention's packed rows (the program that runs; "auto" would count both branches).
    train_program = jax.jit(functools.partial(train_step, packing="checked")).lower(backend.state, one_batch(batch)).compile()
    train = _cost(train_program)
    evaluate = _cost(jax.jit(functools.partial(eval_step, packing="checked")).lower(backend.state, batch).compile())
    return {"train": {k: v / size for k, v in train.items()}, "eval": {k: v / size for k, v in evaluate.items()},
            "train_passes": big_passes(train_program)}


def torch_step_flops(backend, data: dict[str, np.ndarray], size: int) -> dict[str, float]:
    """{'train', 'eval'}: torch's counted FLOPs per sample (matrix products)."""
    batch = to_tensors({k: np.array(v[:size]) for k, v in data.items()}, (*backend.inputs, LABEL), backend.device)
    state = {k: v.clone() for k, v in backend.model.state_dict().items()}
    optimizer_state = backend.optimizer.state_dict()
    with FlopCounterMode(display=False) as counter:
        torch_train_step(backend.model, backend.optimizer, batch)
    train = counter.get_total_flops()
    backend.model.load_state_dict(state)  # the counted step leaves no trace
    backend.optimizer.load_state_dict(optimizer_state)
    backend.model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backend.model(batch)
    return {"train": train / size, "eval": counter.get_total_flops() / size}


def _best_seconds(fn, repeats: int = 7) -> float:
    fn()  # compile, warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict[str, float]:
    """This machine's matmul GFLOP/s (attention-shaped [51200, 64] x [64, 16],
    and 2048^2 square) and memory bandwidth in GB/s (read + write of 64 MB)."""
    rng = np.random.default_rng(0)
    limits = {}
    for name, (m, k, n) in {"matmul_attention_gflops": (51200, 64, 16), "matmul_square_gflops": (2048, 2048, 2048)}.items():
        a = jnp.asarray(rng.standard_normal((m, k), np.float32))
        b = jnp.asarray(rng.standard_normal((k, n), np.float32))
        product = jax.jit(jnp.matmul)
        limits[name] = 2 * m * k * n / _best_seconds(lambda: product(a, b).block_until_ready()) / 1e9
    x = jnp.asarray(rng.standard_normal(16 << 20, np.float32))  # 64 MB
    step = jax.jit(lambda v: v * 1.5 + 0.5)
    limits["bandwidth_gbs"] = 2 * x.nbytes / _best_seconds(lambda: step(x).block_until_ready()) / 1e9
    return limits


def fractions(samples_per_s: float, cost: dict[str, float], limits: dict[str, float]) -> dict[str, float]:
    """The FLOP/s and bytes/s a rate implies, and their fractions of the machine's limits."""
    gflops = samples_per_s * cost["flops"] / 1e9
    gbs = samples_per_s * cost.get("bytes", 0.0) / 1e9
    out = {"gflops": gflops, "of_attention_matmul": gflops / limits["matmul_attention_gflops"]}
    if cost.get("bytes"):
        out |= {"gbs": gbs, "of_bandwidth": gbs / limits["bandwidth_gbs"]}
    return out
