"""The JAX backend of the shared loop: the train state on a device mesh, the
jitted steps for both input paths, weights, checkpoints (orbax), and a
gather across hosts. Mirrors din_torch/backend.py."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import linen as nn, traverse_util
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from din_jax import packing
from din_jax.settings import check, enable_compilation_cache
from core.config import DINConfig, flag
from core.errors import ConfigError
from data.batches import Arrays, eval_batches
from data.schema import LABEL, ROW_MASK, FeatureSchema
from din_jax.chunks import eval_chunk
from din_jax.input import RESIDENT_BYTES, Inputs, blocks, prefetched
from din_jax.mesh import (
    DATA, describe, global_array, logical_shardings, make_mesh, parse_mesh, replicated, rows_sharding, table_rows_multiple,
)
from din_jax.model import COMPUTE_DTYPES, DIN, VOCAB, example_batch, padded_rows
from din_jax.steps import ROWS, MiniBatchAwareL2, create_state, eval_attention, eval_step, state_logical_specs, train_step

log = logging.getLogger("din")


class JaxBackend:
    """The shared loop's backend interface (see training/backend.py) for JAX.

    Runs on a ('data', 'model') device mesh (din_jax/mesh.py; default: every
    device on 'data'): batches are split over 'data', embedding tables over
    'model' when config.shard_embeddings. On one device that is the plain
    jitted step. Everything comes from the config; mba_scales (lambda / n_j
    per table row, training/regularization.py) from the training split when
    config.mba_reg > 0.
    """

    name = "jax"

    def __init__(self, schema: FeatureSchema, config: DINConfig, mba_scales: dict[str, np.ndarray] | None = None):
        check(config)
        if not jax.config.jax_compilation_cache_dir:
            enable_compilation_cache()
        param_dtype = jnp.dtype(config.param_dtype)
        shard_embeddings = config.shard_embeddings
        self.schema = schema
        self.primary = jax.process_index() == 0
        self.mesh = make_mesh(parse_mesh(config.mesh))
        data_size = self.mesh.shape[DATA]
        for name in ("batch_size", "eval_batch_size"):
            if getattr(config, name) % data_size:
                raise ConfigError(f"{flag(name)} {getattr(config, name)} is not divisible by the mesh's "
                                  f"data axis ({data_size})")
        multiple = table_rows_multiple(self.mesh, shard_embeddings)
        compute_dtype = COMPUTE_DTYPES[config.dtype]
        self.model = DIN(schema, config.model, compute_dtype, param_dtype, multiple)
        self.inputs = schema.inputs
        sample = example_batch(schema)
        make = functools.partial(create_state, self.model, sample, config, config.seed)
        # Logical axes (the model's annotations) -> mesh axes (din_jax/mesh.py's rules);
        # every array is created where it lives (no host copy of a sharded table).
        specs = state_logical_specs(self.model, sample, jax.eval_shape(make))
        self.state_sharding = logical_shardings(self.mesh, specs, shard_embeddings)
        self.state = jax.jit(make, out_shardings=self.state_sharding)()
        # Each variable's shape without the rows that only pad a table for even sharding.
        unpadded = DIN(schema, config.model, compute_dtype, param_dtype)
        shapes = jax.eval_shape(lambda: nn.unbox(unpadded.init(jax.random.key(0), sample, train=False)))
        self._shapes = {name: x.shape for name, x in traverse_util.flatten_dict(shapes, sep="/").items()}
        self.regularizer = None
        if mba_scales is not None:
            # Constants of the run, passed to each jitted call; the row scales [V]
            # live where their table's rows live.
            sharding = logical_shardings(self.mesh, P(VOCAB), shard_embeddings)
            scales = {
                table: global_array(sharding, np.pad(np.asarray(s, param_dtype), (0, padded_rows(len(s), multiple) - len(s))))
                for table, s in mba_scales.items()
            }
            self.regularizer = MiniBatchAwareL2(scales, {table: schema.columns_of(table) for table in scales})
        self.steps_per_call, self.batch_size = config.steps_per_call, config.batch_size
        self._jit_steps()
        self.unpacked_blocks = 0
        self.feed = Inputs(self.mesh, config.input)  # how batches reach the devices (din_jax/input.py)
        self.input_path = None  # the training split's, once chosen
        devices = jax.devices()
        self.describe = (
            f"jax {jax.__version__} on {len(devices)} x {devices[0].device_kind} ({jax.process_count()} process), "
            f"{describe(self.mesh)}{', sharded embeddings' if shard_embeddings else ''}, compute {config.dtype}"
        )

    def _jit_steps(self) -> None:
        """The jitted steps (din_jax/steps.py). `packing` (static): "checked" for
        a block whose batches fit the attention's packed rows (checked on the
        host, din_jax/packing.py), else "off"; `chunk` (static): eval rows at a time."""
        state_out = (self.state_sharding, replicated(self.mesh))
        self._train_step = jax.jit(train_step, donate_argnums=0, out_shardings=state_out, static_argnames="packing")
        self._eval_step = jax.jit(eval_step, out_shardings=rows_sharding(self.mesh),
                                  static_argnames=("packing", "chunk"))
        self._eval_attention = jax.jit(eval_attention)

    def streams(self, data: Arrays) -> bool:
        """Whether batches of `data` are streamed from the host (din_jax/input.py)."""
        return self.feed.streams(data, self.inputs + (LABEL,))

    def train_batches(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        streamed, names = self.streams(data), self.inputs + (LABEL,)
        if self.input_path is None:
            self.input_path = "streamed" if streamed else "device-resident"
            size = sum(data[name].nbytes for name in names) / 2**30
            mode = self.feed.mode
            log.info("training input: %s (training split %.2f GB; --input %s%s)", self.input_path, size, mode,
                     f", device-resident up to {RESIDENT_BYTES / 2**30:g} GB" if mode == "auto" else "")
        # A block of K batches: gathered on the host ({name: [K, B, ...]}, in a
        # background thread, a block ahead), or row indices [K, B] into the
        # split's copy on the devices, where each step gathers its batch.
        if streamed:
            resident, load = None, lambda rows: self.feed.gathered(data, rows, names)  # noqa: E731
        else:
            resident, load = self.feed.resident(data, names), lambda rows: {ROWS: self.feed.rows(rows)}  # noqa: E731
        losses = []
        for block, rows, row_mask in prefetched(lambda b: (load(b[0]), *b),
                                                blocks(batches, self.steps_per_call, self.batch_size)):
            block[ROW_MASK] = self.feed.rows(row_mask)
            self.state, block_losses = self._train_step(self.state, block, self.regularizer,
                                                        packing=self._packing(data, rows, row_mask), data=resident)
            losses.append(block_losses)  # [K]
            progress(int(row_mask.sum()))
        if self.unpacked_blocks:
            log.info("%d block(s) of batches had more history positions than the attention's packed rows "
                     "(--history-share %g) and ran on every position", self.unpacked_blocks,
                     self.model.config.history_share)
            self.unpacked_blocks = 0
        # One host sync per call: the losses stay on the device until here.
        # The losses are replicated, so every process reads its own copy.
        return np.asarray(jnp.concatenate(losses), np.float64)[: len(batches)]  # [batches]

    def _packing(self, data: Arrays, rows: np.ndarray, row_mask: np.ndarray, train: bool = True) -> str:
        """"checked" when every step of the block [K, B] fits the attention's
        packed rows, "off" (every position, the same result) otherwise or
        where the attention computes every position anyway. The same on every
        process: each reads the block's histories whole."""
        if not packing.packs(self.model.config, train) or not self.schema.attention_groups:
            return "off"
        running = rows[row_mask.any(axis=1)]  # an all-masked step is skipped
        histories = {h: data[h][running] for g in self.schema.attention_groups for h in g.histories}  # [K, B, T]
        counts = packing.all_live_counts(self.schema, histories)
        if packing.counts_fit(self.schema, self.model.config.history_share, counts):
            return "checked"
        self.unpacked_blocks += train
        return "off"

    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        n = len(data[self.inputs[0]])
        # Every batch is padded to `batch_size` (eval mode is row-independent),
        # so evaluation compiles once whatever the split's size.
        padded = lambda rows: np.pad(rows, (0, batch_size - len(rows)), mode="edge").astype(np.int32)  # noqa: E731
        # On a CPU a big batch runs in cache-sized chunks of every position
        # (din_jax/chunks.py: faster than packing it whole). Otherwise each batch's
        # packing is chosen on the host, as in training: a lax.cond on the device
        # would cost a fitting batch more than packing saves.
        chunk = eval_chunk(self.schema, self.model.config, batch_size)
        packing_of = lambda rows: (  # noqa: E731
            "off" if chunk else self._packing(data, rows[None], np.ones((1, len(rows))), train=False))
        if self.streams(data):
            resident, load = None, lambda rows: self.feed.gathered(data, rows, self.inputs)  # noqa: E731
        else:
            resident, load = self.feed.resident(data, self.inputs), lambda rows: {ROWS: self.feed.rows(rows)}  # noqa: E731
        out = [self._eval_step(self.state, batch, packing=packing, chunk=chunk, data=resident)
               for batch, packing in prefetched(lambda rows: (load(rows), packing_of(rows)),
                                                map(padded, eval_batches(n, batch_size)))]
        # One gather from every device (and host) per evaluation.
        return np.asarray(to_host(jnp.concatenate(out)), np.float32)[:n]

    def attention(self, data: Arrays) -> dict[str, np.ndarray]:
        """Eval-mode attention weights {group: [N, T]} of every row of `data`
        (a small probe: one batch). With the histories pooled, or on several
        processes (the probe's rows would have to be sharded), {}."""
        if self.model.config.pooling != "attention" or jax.process_count() > 1:
            return {}
        weights = self._eval_attention(self.state, {name: np.asarray(data[name]) for name in self.inputs})
        return {group: np.asarray(w, np.float32) for group, w in to_host(weights).items()}

    def attention_norms(self) -> dict[str, float]:
        """The L2 norm of each attention unit's dense kernels {group: norm}."""
        units = {name[len("attention_"):]: tree for name, tree in self.state.params.items()
                 if name.startswith("attention_")}
        return {group: float(np.sqrt(sum(float(jnp.sum(jnp.square(x.astype(jnp.float32))))
                                         for path, x in traverse_util.flatten_dict(tree).items() if path[-1] == "kernel")))
                for group, tree in units.items()}

    def _variables(self) -> dict[str, jax.Array]:
        """Every variable by its '/'-joined path, e.g. 'params/final/kernel'."""
        variables = {"params": self.state.params, "batch_stats": self.state.batch_stats}
        return traverse_util.flatten_dict(variables, sep="/")

    def weights(self) -> dict[str, np.ndarray]:
        """Host copies; tables without the rows that only pad them for sharding."""
        return {
            name: np.array(value[tuple(slice(0, n) for n in self._shapes[name])])
            for name, value in to_host(self._variables()).items()
        }

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        current = self._variables()
        missing, extra = sorted(set(current) - set(weights)), sorted(set(weights) - set(current))
        if missing or extra:
            raise KeyError(f"weights do not fit this model: missing {missing}, unexpected {extra}")
        padded = {}
        for name, value in weights.items():
            shape = current[name].shape
            if np.shape(value) == self._shapes[name] != shape:  # a table padded for even sharding
                value = np.pad(value, [(0, n - m) for n, m in zip(shape, np.shape(value))])
            if np.shape(value) != shape:
                raise ValueError(f"{name}: shape {np.shape(value)}, the model has {self._shapes[name]}")
            padded[name] = np.asarray(value, current[name].dtype)
        variables = traverse_util.unflatten_dict(padded, sep="/")
        shardings = self.state_sharding
        params = jax.tree_util.tree_map(global_array, shardings.params, variables["params"])
        batch_stats = jax.tree_util.tree_map(global_array, shardings.batch_stats, variables["batch_stats"])
        self.state = self.state.replace(params=params, batch_stats=batch_stats)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's moments by parameter name ('mu/<name>', 'nu/<name>', the names
        of `weights`) and its step count ('count')."""
        adam = adam_state(self.state.opt_state)
        out = {"count": np.asarray(int(adam.count), np.int64)}
        for key in ("mu", "nu"):
            moments = to_host(traverse_util.flatten_dict({"params": getattr(adam, key)}, sep="/"))
            out |= {f"{key}/{name}": np.array(value[tuple(slice(0, n) for n in self._shapes[name])])
                    for name, value in moments.items()}
        return out

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Replaces Adam's moments and step count with optimizer_state's."""
        adam, sharding = adam_state(self.state.opt_state), adam_state(self.state_sharding.opt_state)

        def moments(key: str) -> Any:
            current = traverse_util.flatten_dict({"params": getattr(adam, key)}, sep="/")
            shardings = traverse_util.flatten_dict({"params": getattr(sharding, key)}, sep="/")
            loaded = {}
            for name, value in current.items():
                given = np.asarray(state[f"{key}/{name}"], value.dtype)
                if given.shape != value.shape:  # a table padded for even sharding
                    given = np.pad(given, [(0, n - m) for n, m in zip(value.shape, given.shape)])
                loaded[name] = global_array(shardings[name], given)
            return traverse_util.unflatten_dict(loaded, sep="/")["params"]

        count = global_array(sharding.count, np.asarray(state["count"], np.asarray(adam.count).dtype))
        new = adam._replace(count=count, mu=moments("mu"), nu=moments("nu"))
        opt_state = jax.tree_util.tree_map(lambda s: new if isinstance(s, optax.ScaleByAdamState) else s,
                                           self.state.opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
        self.state = self.state.replace(opt_state=opt_state)

    def save_state(self, path: str) -> None:
        """The full training state (parameters, statistics, Adam moments, step, RNG)
        into the new directory `path`, each process writing its own shards."""
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.abspath(path), self._checkpoint_tree())
        checkpointer.wait_until_finished()

    def load_state(self, path: str) -> None:
        """Restores save_state's directory onto this backend's mesh and shardings."""
        template = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), self._checkpoint_tree()
        )
        restored = ocp.StandardCheckpointer().restore(os.path.abspath(path), template)
        self.state = self.state.replace(
            params=restored["params"],
            batch_stats=restored["batch_stats"],
            opt_state=restored["opt_state"],
            step=restored["step"],
            rng=jax.random.wrap_key_data(restored["rng"]),
        )

    def _checkpoint_tree(self) -> dict[str, Any]:
        state = self.state
        return {
            "params": state.params,
            "batch_stats": state.batch_stats,
            "opt_state": state.opt_state,
            "step": state.step,
            "rng": jax.random.key_data(state.rng),  # typed keys are not serialisable
        }


def adam_state(opt_state: Any) -> optax.ScaleByAdamState:
    """The Adam part of the optimiser's state (make_optimizer's chain)."""
    found = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    assert len(found) == 1, found
    return found[0]


def to_host(tree: Any) -> Any:
    """numpy copies of a tree of (possibly sharded, multi-host) arrays."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


Backend = JaxBackend
