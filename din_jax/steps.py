"""Pure, jitted training and evaluation steps for the Flax DIN.

`train_step(state, block) -> (state, losses)` is a pure function of explicit
state (params, batch_stats, optimiser state, RNG) that scans the optimiser
step over a block of batches, so one host dispatch runs many steps;
`eval_step` gives a batch's logits. Mirrors din_torch/steps.py.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn, struct
from flax.training import train_state
from jax.sharding import PartitionSpec as P

from core import schedule
from core.config import DINConfig
from data.schema import LABEL, ROW_MASK, FeatureSchema
from din_jax.chunks import in_chunks
from din_jax.model import DIN, Batch, table_path

ROWS = "rows"  # a block's or batch's row indices into a split resident on the devices


@struct.dataclass
class MiniBatchAwareL2:
    """The paper's mini-batch aware L2 on embedding tables (eq. 4-5, see
    training/regularization.py): penalty = 1/2 sum_tables sum_j alpha_mj * s_j * ||w_j||^2
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


def parameter_group(module: str) -> str:
    """The weight-decay group (core.config.DECAY_GROUPS) of one of DIN's top-level
    modules: 'embeddings', 'attention_<group>', 'mlp', 'final'."""
    return "embedding" if module == "embeddings" else "attention" if module.startswith("attention_") else "mlp"


def add_decayed_weights_by_group(decays: dict[str, float]) -> optax.GradientTransformation:
    """updates + decay * params, each top-level module at its group's decay
    (optax.add_decayed_weights per group; stateless, like it)."""

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, optax.EmptyState]:
        def decayed(module: str) -> Any:
            decay = decays[parameter_group(module)]
            if decay == 0:
                return updates[module]
            return jax.tree_util.tree_map(lambda g, p: g + decay * p, updates[module], params[module])

        return {module: decayed(module) for module in updates}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@functools.lru_cache(maxsize=None)
def make_optimizer(config: DINConfig) -> optax.GradientTransformation:
    """Adam with weight decay per parameter group (config.weight_decays()):
    coupled, added to the gradient BEFORE the Adam moments (torch.optim.Adam),
    or decoupled, added to Adam's direction before the rate scales it
    (optax.adamw, torch.optim.AdamW).

    One object per configuration: `tx` is a static field of TrainState, so a
    new chain for the same settings would make every jitted step trace again.
    """
    decay = add_decayed_weights_by_group(config.weight_decays())
    if config.weight_decay_form == "coupled":
        return optax.chain(decay, optax.adam(learning_rate(config), b1=config.adam_b1, b2=config.adam_b2,
                                             eps=config.adam_eps))
    return optax.chain(optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps), decay,
                       optax.scale_by_learning_rate(learning_rate(config)))


def learning_rate(config: DINConfig) -> float | optax.Schedule:
    """The rate, or its schedule (core/schedule.py; its count lives in Adam's state, so it resumes)."""
    rate = config.learning_rate
    if not schedule.scheduled(config):
        return rate
    decay = max(config.decay_steps, 1)
    after = {"constant": optax.constant_schedule(rate), "cosine": optax.cosine_decay_schedule(rate, decay),
             "linear": optax.linear_schedule(rate, 0.0, decay)}[config.lr_schedule]
    if config.warmup_steps:
        after = optax.join_schedules([optax.linear_schedule(0.0, rate, config.warmup_steps), after], [config.warmup_steps])
    # Adam's step count is int32: as the default float (float64 under jax_enable_x64), the
    # schedule's arithmetic keeps the precision of the parameters it scales.
    return lambda count: after(jnp.asarray(count, jnp.result_type(float)))


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
    regularizer: MiniBatchAwareL2 | None = None, packing: str = "auto",
) -> tuple[jax.Array, Any]:
    """The training loss at `params` (train mode): mean BCE over the real rows,
    plus the mini-batch aware L2 when on. Returns (loss, new batch_stats).
    packing: the attention's (din_jax.attention.AttentionUnit)."""
    (logits, _), updates = apply_fn(
        {"params": params, "batch_stats": batch_stats}, batch, train=True, packing=packing, rngs=rngs,
        mutable=["batch_stats"],
    )
    loss = loss_fn(logits, batch[LABEL], batch.get(ROW_MASK))
    if regularizer is not None:
        loss = loss + regularizer(params, batch)
    return loss, updates["batch_stats"]


def train_step(
    state: TrainState, block: Batch, regularizer: MiniBatchAwareL2 | None = None, packing: str = "auto",
    data: Batch | None = None,
) -> tuple[TrainState, jax.Array]:
    """Optimiser steps on a block of K batches {name: [K, B, ...]} in one
    dispatch (a lax.scan over the leading axis; K = --steps-per-call), each in
    train mode: batch statistics, dropout from the state's key and step.

    ROW_MASK [K, B] marks a batch's real rows: a short batch is padded with
    masked rows, and a step with none is skipped, so every block of an epoch
    has one shape. packing "checked": the caller has checked that the block's
    history positions fit the attention's packed rows (din_jax.packing.fits);
    "off": every position. With `data`, a split resident on the devices
    {name: [N, ...]}, the block holds ROWS [K, B] instead of the batches: each
    step gathers its rows there. Returns (state, losses [K]).
    """
    # The loss is computed in at least float32 (din_jax.layers.at_least_float32), whatever the activations.
    loss_dtype = jnp.promote_types(jax.tree_util.tree_leaves(state.params)[0].dtype, jnp.float32)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, jax.Array]:
        if data is not None:  # row indices: the batch is gathered from the split on the devices
            batch = gather(data, batch[ROWS]) | {ROW_MASK: batch[ROW_MASK]}

        def update(state: TrainState) -> tuple[TrainState, jax.Array]:
            rngs = {"dropout": jax.random.fold_in(state.rng, state.step)}
            loss_and_stats = functools.partial(objective, state.apply_fn, batch_stats=state.batch_stats, batch=batch,
                                               rngs=rngs, regularizer=regularizer, packing=packing)
            (loss, batch_stats), grads = jax.value_and_grad(loss_and_stats, has_aux=True)(state.params)
            return state.apply_gradients(grads=grads, batch_stats=batch_stats), loss.astype(loss_dtype)

        if ROW_MASK not in batch:
            return update(state)
        skip = lambda state: (state, jnp.zeros((), loss_dtype))  # noqa: E731
        return jax.lax.cond(jnp.any(batch[ROW_MASK] > 0), update, skip, state)

    return jax.lax.scan(step, state, block)


def gather(data: Batch, rows: jax.Array) -> Batch:
    """{name: [B, ...]}: the rows [B] of a split on the devices {name: [N, ...]}."""
    return {name: values[rows] for name, values in data.items()}


def one_batch(batch: Batch) -> Batch:
    """A single batch {name: [B, ...]} as a block of one step {name: [1, B, ...]}."""
    return {name: values[None] for name, values in batch.items()}


def eval_step(state: TrainState, batch: Batch, packing: str = "auto", chunk: int | None = None,
              data: Batch | None = None) -> jax.Array:
    """Eval-mode logits [B] (running statistics, no dropout); `chunk` rows at a
    time where din_jax.chunks.eval_chunk says (a CPU), else the whole batch.
    With `data` (a split resident on the devices), batch holds ROWS [B]."""
    if data is not None:
        batch = gather(data, batch[ROWS])

    def logits(batch: Batch) -> jax.Array:
        out, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch, train=False,
                                packing=packing)
        return out

    return in_chunks(logits, batch, chunk)


def eval_attention(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
    """Eval-mode attention weights {group: [B, T]} of a batch (every position a row)."""
    _, intermediates = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, batch, train=False,
                                      packing="off")
    prefix = "attention_weights/"
    return {name[len(prefix):]: value for name, value in intermediates.items() if name.startswith(prefix)}
