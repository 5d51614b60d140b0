"""Pure, jitted training and evaluation steps for the Flax DIN, and its backend.

`train_step(state, batch) -> (state, metrics)` is a pure function of explicit
state (params, batch_stats, optimiser state, RNG); `train_steps` scans it over
a block of batches gathered on the device, so one host dispatch runs many
steps and the training data crosses to the device once.
"""

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
from flax import linen as nn, struct, traverse_util
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec as P

from data.batches import Arrays, eval_batches, prefetched
from data.config import DINConfig
from data.errors import ConfigError
from data.schema import LABEL, ROW_MASK, FeatureSchema
from din_jax.mesh import (
    DATA, describe, global_array, logical_shardings, make_mesh, parse_mesh, replicated, rows_sharding, table_rows_multiple,
)
from din_jax.model import COMPUTE_DTYPES, DIN, VOCAB, Batch, example_batch, padded_rows, table_path


@struct.dataclass
class MiniBatchAwareL2:
    """The paper's mini-batch aware L2 on embedding tables (eq. 4-5, see
    data/regularization.py): penalty = 1/2 sum_tables sum_j alpha_mj * s_j * ||w_j||^2
    with s_j = lambda / n_j, so row j's gradient gains lambda * alpha_mj / n_j * w_j."""

    scales: dict[str, jax.Array]  # table -> [V] lambda / n_j
    columns: dict[str, tuple[str, ...]] = struct.field(pytree_node=False)  # table -> batch columns

    @classmethod
    def create(cls, schema: FeatureSchema, scales: dict[str, np.ndarray], dtype: Any = jnp.float32) -> "MiniBatchAwareL2":
        columns = {table: schema.columns_of(table) for table in scales}
        return cls({table: jnp.asarray(s, dtype) for table, s in scales.items()}, columns)

    def __call__(self, params: Any, batch: Batch) -> jax.Array:
        row_mask = batch.get(ROW_MASK)
        total = 0.0
        for table, scale in self.scales.items():
            weight = functools.reduce(lambda tree, key: tree[key], table_path(table), params)  # [V, E]
            present = jnp.zeros(scale.shape, bool)  # alpha_mj
            for column in self.columns[table]:
                ids = batch[column]  # [B] or [B, T]
                if row_mask is not None:  # rows that only fill a short batch are not in it
                    ids = jnp.where(row_mask.reshape((-1,) + (1,) * (ids.ndim - 1)) > 0, ids, 0)
                present = present.at[ids.reshape(-1)].set(True)
            present = present.at[0].set(False)  # padding
            total = total + jnp.sum(jnp.where(present, scale, 0.0) * jnp.sum(jnp.square(weight), axis=1))
        return 0.5 * total


class TrainState(train_state.TrainState):
    """Flax's TrainState plus BatchNorm statistics and the dropout RNG key.

    The mini-batch aware regulariser is no state: its row scales are constants
    of the run, passed to the jitted step as an argument."""

    batch_stats: Any
    rng: jax.Array


def enable_compilation_cache(path: str | None = None) -> str:
    """Persists XLA compilations on disk, so a second run of the same shapes
    starts at once (a DIN step takes seconds to compile on a small CPU)."""
    path = path or os.environ.get("DIN_XLA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "din-jax", "xla")
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def _not_embeddings(params: Any) -> Any:
    return {name: jax.tree_util.tree_map(lambda _: name != "embeddings", tree) for name, tree in params.items()}


@functools.lru_cache(maxsize=None)
def make_optimizer(config: DINConfig) -> optax.GradientTransformation:
    """torch.optim.Adam: L2 decay added to the gradient BEFORE the Adam moments.

    With config.mba_reg the embedding tables get no weight decay: the
    mini-batch aware term regularises them instead. One object per
    configuration: `tx` is a static field of TrainState, so a new chain for
    the same settings would make every jitted step trace again.
    """
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=_not_embeddings if config.mba_reg > 0 else None),
        optax.adam(config.learning_rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps),
    )


def create_state(model: DIN, sample: Batch, config: DINConfig, seed: int) -> TrainState:
    """Initialises variables in eval mode (running statistics stay at 0 and 1),
    parameters in `model.param_dtype`; the tables' logical-axis boxes are
    dropped (their shardings come from `state_logical_specs`)."""
    params_key, dropout_key = jax.random.split(jax.random.key(seed))
    variables = nn.unbox(model.init(params_key, sample, train=False))
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=make_optimizer(config),
        rng=dropout_key,
    ).replace(step=jnp.zeros((), jnp.int32))  # An array from the start: a Python 0 would recompile.


def state_logical_specs(model: DIN, sample: Batch, state: TrainState) -> TrainState:
    """The logical PartitionSpec of every leaf of `state` (an abstract TrainState):
    the tables' (vocab, embed) annotations, the same for their Adam moments,
    P() (replicated) for everything else."""
    boxed = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), sample)
    specs = nn.get_partition_spec(boxed)
    is_spec = lambda x: isinstance(x, P)  # noqa: E731
    opt_specs = optax.tree_map_params(
        state.tx, lambda _, spec: spec, state.opt_state, specs["params"], transform_non_params=lambda _: P(), is_leaf=is_spec
    )
    return state.replace(params=specs["params"], batch_stats=specs["batch_stats"], opt_state=opt_specs, step=P(), rng=P())


def loss_fn(logits: jax.Array, labels: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
    """Mean binary cross-entropy on logits over the real rows (row_mask 1)."""
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))  # [B]
    if row_mask is None:
        return losses.mean()
    row_mask = row_mask.astype(losses.dtype)
    return jnp.sum(losses * row_mask) / jnp.sum(row_mask)


def objective(
    apply_fn: Callable, params: Any, batch_stats: Any, batch: Batch, rngs: dict | None = None,
    regularizer: MiniBatchAwareL2 | None = None,
) -> tuple[jax.Array, Any]:
    """The training loss at `params` (train mode): mean BCE over the real rows,
    plus the mini-batch aware L2 when on. Returns (loss, new batch_stats)."""
    (logits, _), updates = apply_fn(
        {"params": params, "batch_stats": batch_stats}, batch, train=True, rngs=rngs, mutable=["batch_stats"]
    )
    loss = loss_fn(logits, batch[LABEL], batch.get(ROW_MASK))
    if regularizer is not None:
        loss = loss + regularizer(params, batch)
    return loss, updates["batch_stats"]


def train_step(
    state: TrainState, batch: Batch, regularizer: MiniBatchAwareL2 | None = None
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step in train mode (batch statistics, dropout)."""
    rngs = {"dropout": jax.random.fold_in(state.rng, state.step)}
    loss_and_stats = functools.partial(
        objective, state.apply_fn, batch_stats=state.batch_stats, batch=batch, rngs=rngs, regularizer=regularizer
    )
    (loss, batch_stats), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, {"loss": loss}


def eval_step(state: TrainState, batch: Batch) -> jax.Array:
    """Eval-mode logits [B] (running statistics, no dropout)."""
    logits, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch, train=False)
    return logits


def _gather(data: Batch, rows: jax.Array) -> Batch:
    return {name: values[rows] for name, values in data.items()}  # each [B, ...]


def _scan_steps(state: TrainState, steps: Any, batch_of: Callable, regularizer: MiniBatchAwareL2 | None):
    """lax.scan of train_step over `steps` (leading axis K); batch_of(step) ->
    (batch, row_mask [B]). A step whose rows are all masked is skipped, so every
    block of an epoch has the same shape. Returns (state, losses [K])."""
    # The loss is computed in at least float32 (din_jax.model.wide), whatever the activations.
    loss_dtype = jnp.promote_types(jax.tree_util.tree_leaves(state.params)[0].dtype, jnp.float32)

    def body(state, step):
        batch, mask = batch_of(step)
        batch = batch | {ROW_MASK: mask}

        def run(state):
            state, metrics = train_step(state, batch, regularizer)
            return state, metrics["loss"].astype(loss_dtype)

        def skip(state):
            return state, jnp.zeros((), loss_dtype)

        return jax.lax.cond(jnp.any(mask > 0), run, skip, state)

    return jax.lax.scan(body, state, steps)


def train_steps(
    state: TrainState, data: Batch, rows: jax.Array, row_mask: jax.Array, regularizer: MiniBatchAwareL2 | None = None
) -> tuple[TrainState, jax.Array]:
    """Runs up to K train steps on device-resident `data` in one dispatch.

    rows [K, B] index `data`; row_mask [K, B] marks real rows (a short batch is
    padded with masked rows). `regularizer`, a constant of the run, is closed
    over by the scan, not carried. Returns the losses [K].
    """
    return _scan_steps(state, (rows, row_mask), lambda step: (_gather(data, step[0]), step[1]), regularizer)


def train_steps_on(
    state: TrainState, batches: Batch, row_mask: jax.Array, regularizer: MiniBatchAwareL2 | None = None
) -> tuple[TrainState, jax.Array]:
    """train_steps on a block of batches gathered on the host (streamed input):
    batches {name: [K, B, ...]}, row_mask [K, B]. Returns the losses [K]."""
    return _scan_steps(state, (batches, row_mask), lambda step: step, regularizer)


def eval_logits(state: TrainState, data: Batch, rows: jax.Array) -> jax.Array:
    return eval_step(state, _gather(data, rows))  # [B]


def blocks(batches: list[np.ndarray], steps_per_call: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Packs batches (an epoch, or the part of one between checkpoints) into
    (rows [K, B], row_mask [K, B]) blocks of one shape, K = steps_per_call.

    B is batch_size; a shorter batch is filled by repeating its rows, masked
    out. The last block is filled with all-masked steps, which `train_steps`
    skips. One shape means one compilation per run, whatever the batches.
    """
    size = max(batch_size, *(len(rows) for rows in batches))
    count = steps_per_call
    rows = np.zeros((-(-len(batches) // count) * count, size), dtype=np.int32)
    mask = np.zeros(rows.shape, dtype=np.float32)
    for i, batch in enumerate(batches):
        rows[i] = np.resize(batch, size)
        mask[i, : len(batch)] = 1.0
    return [(rows[i : i + count], mask[i : i + count]) for i in range(0, len(rows), count)]


log = logging.getLogger("din")

DEVICE_SPLITS = 3  # splits kept on the devices by JaxBackend: training, validation, test
# --input auto: a split up to this size is copied to every device once (each
# batch gathered there); a bigger one is streamed, batch by batch.
RESIDENT_BYTES = 1 << 30


class JaxBackend:
    """The shared loop's backend interface (see training/backend.py) for JAX.

    Runs on a ('data', 'model') device mesh (din_jax/mesh.py; default: every
    device on 'data'): batches are split over 'data', embedding tables over
    'model' when shard_embeddings. On one device that is the plain jitted step.
    """

    name = "jax"

    def __init__(
        self,
        schema: FeatureSchema,
        config: DINConfig,
        steps_per_call: int | None = None,
        param_dtype: Any = None,
        mba_scales: dict[str, np.ndarray] | None = None,
        mesh: Mesh | None = None,
        shard_embeddings: bool | None = None,
    ):
        """Placement comes from the config (steps_per_call, param_dtype, mesh,
        shard_embeddings); an argument overrides it (tests, parity).
        config.dtype is the computation's. mba_scales: lambda / n_j per table row
        (data/regularization.py), when config.mba_reg > 0."""
        steps_per_call = steps_per_call or config.steps_per_call
        param_dtype = jnp.dtype(param_dtype or config.param_dtype)
        if param_dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ConfigError("--param-dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1")
        shard_embeddings = config.shard_embeddings if shard_embeddings is None else shard_embeddings
        self.schema = schema
        self.primary = jax.process_index() == 0
        self.mesh = mesh or make_mesh(parse_mesh(config.mesh))
        data_size = self.mesh.shape[DATA]
        for name in ("batch_size", "eval_batch_size"):
            if getattr(config, name) % data_size:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(config, name)} is not divisible by the mesh's data axis ({data_size})")
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
        self.steps_per_call, self.batch_size = steps_per_call, config.batch_size
        self._train_steps = jax.jit(
            train_steps, donate_argnums=0, out_shardings=(self.state_sharding, replicated(self.mesh))
        )
        self._eval_logits = jax.jit(eval_logits, out_shardings=rows_sharding(self.mesh))
        self._train_steps_on = jax.jit(
            train_steps_on, donate_argnums=0, out_shardings=(self.state_sharding, replicated(self.mesh))
        )
        self._eval_step = jax.jit(eval_step, out_shardings=rows_sharding(self.mesh))
        self._on_device: dict[int, tuple[Arrays, Batch]] = {}
        self.input, self.input_path = config.input, None  # input_path: the training split's, once chosen
        devices = jax.devices()
        self.describe = (
            f"jax {jax.__version__} on {len(devices)} x {devices[0].device_kind} ({jax.process_count()} process), "
            f"{describe(self.mesh)}{', sharded embeddings' if shard_embeddings else ''}, compute {config.dtype}"
        )

    def _device_data(self, data: Arrays, names: tuple[str, ...]) -> Batch:
        """Copies a split to the devices once (replicated: each batch gathers its rows
        there); later calls with the same split reuse it. The last few splits are
        kept (training, validation, test), not every array ever given."""
        key = id(data)
        if key not in self._on_device:
            # Holding `data` keeps its id from being reused by another object.
            arrays = {name: global_array(replicated(self.mesh), data[name]) for name in names}
            self._on_device[key] = (data, arrays)
            while len(self._on_device) > DEVICE_SPLITS:
                self._on_device.pop(next(iter(self._on_device)))
        cached = self._on_device[key][1]
        if not set(names) <= set(cached):
            cached |= {name: global_array(replicated(self.mesh), data[name]) for name in names if name not in cached}
        return {name: cached[name] for name in names}

    def streams(self, data: Arrays) -> bool:
        """Whether batches of `data` are streamed from the host (config.input
        'stream'), not gathered from a copy on every device ('device'); 'auto':
        streamed when the split is over RESIDENT_BYTES."""
        if self.input != "auto":
            return self.input == "stream"
        return sum(data[name].nbytes for name in (*self.inputs, LABEL) if name in data) > RESIDENT_BYTES

    def train_epoch(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        streamed, names = self.streams(data), self.inputs + (LABEL,)
        if self.input_path is None:
            self.input_path = "streamed" if streamed else "device-resident"
            size = sum(data[name].nbytes for name in names) / 2**30
            log.info("training input: %s (training split %.2f GB; --input %s%s)", self.input_path, size, self.input,
                     f", device-resident up to {RESIDENT_BYTES / 2**30:g} GB" if self.input == "auto" else "")
        losses = []
        if streamed:
            def load(block):  # in a background thread, a block ahead
                rows, row_mask = block
                return self._host_rows(data, rows, names), self._device_rows(row_mask), int(row_mask.sum())

            for batches_on_device, mask, count in prefetched(load, blocks(batches, self.steps_per_call, self.batch_size)):
                self.state, block_losses = self._train_steps_on(self.state, batches_on_device, mask, self.regularizer)
                losses.append(block_losses)  # [K]
                progress(count)
        else:
            device_data = self._device_data(data, names)
            for rows, row_mask in blocks(batches, self.steps_per_call, self.batch_size):
                rows_global, mask_global = self._device_rows(rows), self._device_rows(row_mask)
                self.state, block_losses = self._train_steps(self.state, device_data, rows_global, mask_global, self.regularizer)
                losses.append(block_losses)  # [K]
                progress(int(row_mask.sum()))
        # One host sync per call: the losses stay on the device until here.
        # The losses are replicated, so every process reads its own copy.
        return np.asarray(jnp.concatenate(losses), np.float64)[: len(batches)]  # [batches]

    def _device_rows(self, rows: np.ndarray) -> jax.Array:
        """[K, B] (or [B]) row indices or masks with B split over 'data'."""
        return global_array(rows_sharding(self.mesh, leading=rows.ndim - 1), rows)

    def _host_rows(self, data: Arrays, rows: np.ndarray, names: tuple[str, ...]) -> Batch:
        """{name: [K, B, ...]} global arrays of data's `rows` [K, B] (or [B]) with B
        split over 'data': each device's slice of the rows is gathered on its own
        host (from memory-mapped arrays: only those rows are read), so no device
        and no host holds more than its shard of a batch."""
        sharding = rows_sharding(self.mesh, leading=rows.ndim - 1)

        def array(values: np.ndarray) -> jax.Array:
            gather = lambda index: np.asarray(values[rows[index[: rows.ndim]]])  # noqa: E731
            return jax.make_array_from_callback(rows.shape + values.shape[1:], sharding, gather)

        return {name: array(data[name]) for name in names}

    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        n = len(data[self.inputs[0]])
        # Every batch is padded to `batch_size` (eval mode is row-independent),
        # so evaluation compiles once whatever the split's size.
        padded = lambda rows: np.pad(rows, (0, batch_size - len(rows)), mode="edge").astype(np.int32)  # noqa: E731
        if self.streams(data):
            load = lambda rows: self._host_rows(data, padded(rows), self.inputs)  # noqa: E731
            out = [self._eval_step(self.state, batch) for batch in prefetched(load, eval_batches(n, batch_size))]
        else:
            device_data = self._device_data(data, self.inputs)
            out = [self._eval_logits(self.state, device_data, self._device_rows(padded(rows)))
                   for rows in eval_batches(n, batch_size)]
        # One gather from every device (and host) per evaluation.
        return np.asarray(to_host(jnp.concatenate(out)), np.float32)[:n]

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


def to_host(tree: Any) -> Any:
    """numpy copies of a tree of (possibly sharded, multi-host) arrays."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)
