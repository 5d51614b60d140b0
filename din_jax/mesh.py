"""The device mesh and where each array lives on it.

A 2-D mesh with axes ('data', 'model'):
  - a batch is split over 'data' (each device holds B / data rows),
  - the model annotates each embedding table [V, E] with the logical axes
    ('vocab', 'embed') (din_jax/model.py); `logical_rules` maps them to mesh
    axes: with shard_embeddings 'vocab' -> 'model', so every table, its Adam
    moments and its mini-batch aware row scales are split along the
    vocabulary; otherwise replicated,
  - everything unannotated (dense parameters, BatchNorm statistics, their
    optimiser moments) is replicated.
The train step itself is unchanged: jit receives arrays with these shardings
and XLA inserts the collectives (the BatchNorm sums over the batch become
all-reduces, so statistics stay those of the whole global batch).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from core.errors import ConfigError
from din_jax.model import EMBED, VOCAB

DATA, MODEL = "data", "model"


def initialize_distributed() -> None:
    """jax.distributed.initialize() for a multi-host run, before any other JAX call.

    On Cloud TPU, SLURM and Open MPI JAX finds the coordinator itself;
    elsewhere set JAX_COORDINATOR_ADDRESS (read by JAX) and JAX_NUM_PROCESSES,
    JAX_PROCESS_ID (read here) on every host.
    """
    kwargs = {}
    for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(name):
            if not os.environ[name].strip().isdigit():
                raise ConfigError(f"--distributed: {name}={os.environ[name]!r} is not a whole number")
            kwargs[key] = int(os.environ[name])
    try:
        jax.distributed.initialize(**kwargs)
    except ValueError as error:  # JAX found no coordinator (no TPU pod, SLURM or MPI job, no address set)
        raise ConfigError(
            f"--distributed: {error} Outside a TPU pod, SLURM or Open MPI job, set JAX_COORDINATOR_ADDRESS=host:port, "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID on every host"
        ) from None


def parse_mesh(text: str | None) -> dict[str, int]:
    """'data=4,model=2' -> {'data': 4, 'model': 2}; '' or None -> all devices on 'data'."""
    shape = {DATA: 0, MODEL: 1}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, size = part.partition("=")
        name = name.strip()
        if name not in shape or not size.strip().isdigit() or int(size) < 1:
            raise ConfigError(f"--mesh {text!r}: expected data=N[,model=M] with positive sizes, got {part!r}")
        shape[name] = int(size)
    if not shape[DATA]:
        shape[DATA] = max(jax.device_count() // shape[MODEL], 1)
    return shape


def make_mesh(shape: dict[str, int] | None = None) -> Mesh:
    """A ('data', 'model') mesh over the first data * model devices (all hosts' devices)."""
    shape = shape or parse_mesh(None)
    size = shape[DATA] * shape[MODEL]
    devices = jax.devices()
    if size > len(devices):
        raise ConfigError(f"--mesh data={shape[DATA]},model={shape[MODEL]} needs {size} devices, {len(devices)} available")
    # make_mesh orders devices by the physical topology (TPU ICI rings). Auto axes:
    # jit propagates the shardings of its inputs and outputs (no sharding in types).
    return jax.make_mesh(
        (shape[DATA], shape[MODEL]), (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices[:size]
    )


def describe(mesh: Mesh) -> str:
    return f"mesh data={mesh.shape[DATA]},model={mesh.shape[MODEL]}"


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def rows_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Batch rows split over 'data', after `leading` unsplit axes (e.g. the K steps of a block)."""
    return NamedSharding(mesh, P(*([None] * leading), DATA))


def logical_rules(shard_embeddings: bool) -> tuple[tuple[str, str | None], ...]:
    """Logical axis -> mesh axis: the one table that decides where arrays live."""
    return ((VOCAB, MODEL if shard_embeddings else None), (EMBED, None))


def logical_shardings(mesh: Mesh, specs: Any, shard_embeddings: bool) -> Any:
    """NamedShardings for a tree of logical PartitionSpecs (P() = replicated)."""
    return nn.logical_to_mesh_sharding(specs, mesh, logical_rules(shard_embeddings))


def table_rows_multiple(mesh: Mesh, shard_embeddings: bool) -> int:
    """Tables are padded to a multiple of the 'model' size: XLA shards only evenly."""
    return mesh.shape[MODEL] if shard_embeddings else 1


def global_array(sharding: NamedSharding, value: np.ndarray) -> jax.Array:
    """A global array from a value every process knows in full (all hosts draw the
    same batches from the same seed): each process fills only the shards of
    its own devices, so on several hosts each feeds its slice of the batch."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
