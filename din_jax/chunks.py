"""Evaluation in cache-sized chunks on a CPU.

In eval mode every row of a batch is computed on its own (BatchNorm uses its
running statistics), so a batch can run a chunk of rows at a time with the
same result. On a CPU that is much faster when the attention's activations
outgrow the caches: at the paper's sizes on ml-latest-small (two groups of
50 positions, 80 units) one B = 1024 batch holds [102400, 80] activations,
16 MB each, and evaluated 2.4x as fast in chunks of 64 rows as whole
(docs/performance.md, "Evaluation in cache-sized chunks"). An accelerator
wants the whole batch at once, so chunking is for the CPU only. Training
cannot chunk: its BatchNorm statistics are the whole batch's.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from core.config import ModelConfig
from data.schema import FeatureSchema

# A chunk's widest attention activation, [rows * positions, H] float32, fits in this.
CHUNK_BYTES = 2**21


def eval_chunk(schema: FeatureSchema, config: ModelConfig, batch_size: int) -> int | None:
    """Rows per chunk for an eval-mode batch of `batch_size` rows on one CPU
    device: the largest power of two whose attention activations fit
    CHUNK_BYTES; None (the whole batch) on accelerators, on several devices
    (a sharded batch), or where the batch fits already."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1 or not schema.attention_groups:
        return None
    positions = sum(schema.history_length(group) for group in schema.attention_groups)
    row_bytes = positions * max(config.attention_hidden) * 4
    rows = 1 << max(0, (CHUNK_BYTES // row_bytes).bit_length() - 1)
    return rows if rows < batch_size else None


def in_chunks(fn: Callable[[dict[str, jax.Array]], Any], batch: dict[str, jax.Array], rows: int | None) -> Any:
    """fn(batch) for a row-independent fn, `rows` rows at a time (lax.map).

    batch {name: [B, ...]}; fn's outputs are [B, ...] arrays. The last chunk is
    filled with zero rows (empty histories), whose outputs are dropped.
    """
    size = len(next(iter(batch.values())))
    if rows is None or size <= rows:
        return fn(batch)
    fill = -size % rows
    chunks = {name: jnp.pad(x, [(0, fill)] + [(0, 0)] * (x.ndim - 1)).reshape(-1, rows, *x.shape[1:])
              for name, x in batch.items()}  # each [B / rows, rows, ...]
    out = jax.lax.map(fn, chunks)
    return jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:])[:size], out)
