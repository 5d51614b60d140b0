"""Side-by-side runs of the torch and Flax DIN from identical weights.

Every comparison returns `Diff` rows (name, max abs and relative difference,
tolerance), so a failure names the tensor that differs: logits, attention
weights, the MLP input, a BatchNorm's new running statistics, a parameter's
gradient or its value after N optimiser steps.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from core.config import DINConfig
from data.schema import USER, FeatureSchema
from din_jax import model as jax_model
from din_jax import steps as jax_steps
from din_torch import model as torch_model
from din_torch import steps as torch_steps
from inference.convert import flax_to_torch, torch_to_flax
from parity.diffs import TOLERANCES, Diff, diff

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class Twins:
    """One DIN in both frameworks with the same weights, in float32 or float64;
    mba_scales (lambda / n_j per table row) adds the mini-batch aware L2 to
    both training objectives."""

    def __init__(
        self,
        schema: FeatureSchema,
        config: DINConfig,
        dtype: str,
        torch_state: dict | None = None,
        seed: int = 0,
        mba_scales: dict[str, np.ndarray] | None = None,
    ):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise RuntimeError("float64 parity needs jax_enable_x64 set before JAX is used (JAX_ENABLE_X64=1)")
        self.schema, self.config, self.dtype = schema, config, dtype
        self.tol = TOLERANCES[dtype]
        torch.manual_seed(seed)
        self.torch = torch_model.DIN(schema, config).to(TORCH_DTYPES[dtype])
        if torch_state is not None:
            self.torch.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in torch_state.items()})
            self.torch.to(TORCH_DTYPES[dtype])
        self.flax = jax_model.DIN(schema, config, param_dtype=jnp.dtype(dtype))
        self.tx = jax_steps.make_optimizer(config)
        # The Flax variables' tree and shapes, traced once: synced_steps converts torch's state every step.
        sample = jax_model.example_batch(schema, float_dtype=dtype)
        self.template = jax.eval_shape(functools.partial(self.flax.init, train=False), jax.random.key(0), sample)
        self.variables = self.flax_variables(self.torch.state_dict())
        self.torch_regularizer = None if mba_scales is None else torch_steps.MiniBatchAwareL2(schema, mba_scales)
        self.jax_regularizer = None
        if mba_scales is not None:
            self.jax_regularizer = jax_steps.MiniBatchAwareL2.create(schema, mba_scales, jnp.dtype(dtype))

    def jax_state(self) -> jax_steps.TrainState:
        """A Flax TrainState holding the twins's current weights."""
        return jax_steps.TrainState.create(
            apply_fn=self.flax.apply,
            params=self.variables["params"],
            batch_stats=self.variables["batch_stats"],
            tx=self.tx,  # one object per twins: the jitted step is traced once, not once per state
            rng=jax.random.key(0),
        )

    def flax_variables(self, state_dict: dict) -> dict:
        return jax.tree_util.tree_map(jnp.asarray, torch_to_flax(state_dict, self.template))

    def batch(self, data: dict, rows: np.ndarray) -> dict:
        """Rows of an encoded split as model inputs: numeric features in the twins's dtype."""
        batch = {name: data[name][rows] for name in data if name != USER}
        for name in self.schema.numeric:
            batch[name] = batch[name].astype(self.dtype)
        return batch

    def torch_batch(self, batch: dict) -> dict:
        return {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}

    def jax_batch(self, batch: dict) -> dict:
        return {k: jnp.asarray(v) for k, v in batch.items()}

    def forward(self, batch: dict, train: bool, prefix: str = "") -> list[Diff]:
        """Logits, every intermediate and (train mode) every new running statistic."""
        saved = {k: v.clone() for k, v in self.torch.state_dict().items()}
        self.torch.train(train)
        with torch.no_grad():
            t_logits, t_inter = self.torch(self.torch_batch(batch))
        t_state = {k: v.clone() for k, v in self.torch.state_dict().items()}
        self.torch.load_state_dict(saved)  # Leave the twins as it was.
        (j_logits, j_inter), updates = _apply(self.flax, train)(self.variables, self.jax_batch(batch))
        tol, rtol = self.tol["forward"], self.tol["forward_rtol"]
        rows = [diff(f"{prefix}logits", t_logits, j_logits, tol, rtol)]
        rows += [diff(f"{prefix}{k}", t_inter[k], j_inter[k], tol, rtol) for k in sorted(t_inter)]
        if train:
            j_state = flax_to_torch({"batch_stats": updates["batch_stats"]})
            rows += [diff(f"{prefix}{k}", t_state[k], j_state[k], self.tol["stats"]) for k in sorted(j_state)]
        return rows

    def eval_logits(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode logits [B] of (torch, jax)."""
        self.torch.eval()
        with torch.no_grad():
            t_logits = self.torch(self.torch_batch(batch))[0].numpy()
        return t_logits, np.asarray(_apply(self.flax, False)(self.variables, self.jax_batch(batch))[0][0])

    def gradients(self, batch: dict) -> list[Diff]:
        """Gradient of the training objective w.r.t. every parameter (train mode)."""
        saved = {k: v.clone() for k, v in self.torch.state_dict().items()}
        self.torch.train()
        self.torch.zero_grad(set_to_none=True)
        torch_steps.objective(self.torch, self.torch_batch(batch), self.torch_regularizer).backward()
        t_grads = {k: p.grad for k, p in self.torch.named_parameters()}
        self.torch.load_state_dict(saved)
        variables = self.variables
        j_grads = _grads(self.flax)(variables["params"], variables["batch_stats"], self.jax_batch(batch), self.jax_regularizer)
        j_grads = flax_to_torch({"params": j_grads})
        return [diff(f"grad {k}", t_grads[k], j_grads[k], self.tol["grad"]) for k in sorted(j_grads)]

    def train_steps(self, batches: list[dict], adam: dict | None = None) -> list[Diff]:
        """Adam steps (coupled weight decay) on the same batches; every weight compared after.
        adam: the state they start from (a continued run's), by torch's names:
        'mu/<name>', 'nu/<name>' and 'count'; None: Adam's first step."""
        model = self.torch
        optimizer = torch_steps.make_optimizer(model, self.config)
        rate = torch_steps.make_schedule(optimizer, self.config)
        state = self.jax_state()
        if adam is not None:
            for name, parameter in model.named_parameters():
                optimizer.state[parameter] = {"step": torch.tensor(float(adam["count"])),
                                              "exp_avg": torch.as_tensor(adam[f"mu/{name}"]).to(parameter),
                                              "exp_avg_sq": torch.as_tensor(adam[f"nu/{name}"]).to(parameter)}
            state = state.replace(opt_state=optax.tree_utils.tree_set(
                state.opt_state, count=jnp.asarray(int(adam["count"]), jnp.int32),
                mu=self.adam_moment(optimizer, "exp_avg"), nu=self.adam_moment(optimizer, "exp_avg_sq")))
        for batch in batches:
            torch_steps.train_step(model, optimizer, self.torch_batch(batch), self.torch_regularizer, rate)
        for batch in batches:
            state, _ = _train_step(state, jax_steps.one_batch(self.jax_batch(batch)), self.jax_regularizer)
        final = flax_to_torch({"params": state.params, "batch_stats": state.batch_stats})
        torch_state = model.state_dict()
        self.variables = self.flax_variables(torch_state)  # Continue from torch's weights.
        return [diff(f"after {len(batches)} steps: {k}", torch_state[k], final[k], *self.step_tolerance(k))
                for k in sorted(final)]

    def synced_steps(self, batches: list[dict]) -> tuple[list[Diff], list[int]]:
        """Adam steps each taken by both frameworks from torch's state (weights,
        running statistics, Adam's step count and moments); every weight and
        moment compared after each step, the worst step per tensor returned,
        with the steps left out of the comparison: those at a PReLU kink.

        A float32 trajectory compared only at its end holds while JAX rounds as
        torch does: a PReLU input within rounding of 0 takes the other slope in
        one framework, and Adam carries that into every later step (docs/parity.md).
        From a shared state, each step's rounding is one step's; but a step
        where one of torch's PReLU inputs lies within the forward tolerance of
        0 may take the other slope in JAX, and that row's gradient is then
        another valid one, a quarter off: such a step is taken and not compared.
        Which steps those are is decided by torch's inputs alone, so nothing
        JAX computes can leave a step out.
        """
        model = self.torch
        optimizer = torch_steps.make_optimizer(model, self.config)
        rate = torch_steps.make_schedule(optimizer, self.config)
        named = dict(model.named_parameters())
        worst: dict[str, Diff] = {}
        kinks: list[int] = []
        first = next(iter(named.values()))
        for step, batch in enumerate(batches):
            self.variables = self.flax_variables(model.state_dict())
            state = self.jax_state()
            if optimizer.state[first]:  # after torch's first step: its count and moments
                count = int(optimizer.state[first]["step"])
                state = state.replace(step=count, opt_state=optax.tree_utils.tree_set(
                    state.opt_state, count=jnp.asarray(count, jnp.int32),
                    mu=self.adam_moment(optimizer, "exp_avg"), nu=self.adam_moment(optimizer, "exp_avg_sq")))
            with prelu_inputs(model) as inputs:
                torch_steps.train_step(model, optimizer, self.torch_batch(batch), self.torch_regularizer, rate)
            state, _ = _train_step(state, jax_steps.one_batch(self.jax_batch(batch)), self.jax_regularizer)
            if any(bool((x.abs() < self.tol["forward"]).any()) for x in inputs):
                kinks.append(step)
                continue
            final = flax_to_torch({"params": state.params, "batch_stats": state.batch_stats})
            final.update({f"{k} (Adam {m})": v for m in ("mu", "nu") for k, v in flax_to_torch(
                {"params": optax.tree_utils.tree_get(state.opt_state, m)}).items()})
            reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
            reference.update({f"{k} (Adam {m})": optimizer.state[p][key] for k, p in named.items()
                              for m, key in (("mu", "exp_avg"), ("nu", "exp_avg_sq"))})
            for name, value in final.items():
                row = diff(f"{len(batches)} steps, each from torch's state: {name}", reference[name], value,
                           *self.step_tolerance(name))
                if name not in worst or row.max_abs / row.allowed > worst[name].max_abs / worst[name].allowed:
                    worst[name] = row
        self.variables = self.flax_variables(model.state_dict())
        return [worst[k] for k in sorted(worst)], kinks

    def step_tolerance(self, name: str) -> tuple[float, float]:
        """(absolute, relative) tolerance of a state entry after steps. A running
        statistic is a batch mean, a forward quantity: float32 sums over a
        batch's B x T attention rows (6,400 at the defaults) round at 1e-6, so
        it takes the forward statistics' tolerance where that is looser."""
        if "running_" in name:
            return max(self.tol["steps"], self.tol["stats"]), self.tol["steps_rtol"]
        return self.tol["steps"], self.tol["steps_rtol"]

    def adam_moment(self, optimizer: torch.optim.Adam, key: str) -> dict:
        """torch Adam's per-parameter `key` (exp_avg, exp_avg_sq) as a Flax params tree."""
        moments = {name: optimizer.state[p][key] for name, p in self.torch.named_parameters()}
        template = {"params": self.variables["params"]}
        return jax.tree_util.tree_map(jnp.asarray, torch_to_flax(moments, template))["params"]


def jax_outputs(model: jax_model.DIN, packing: str = "auto"):
    """One jitted program per model and attention packing (a compilation each,
    not one per operation): (variables, batch) -> eval-mode logits and
    intermediates; train-mode logits, intermediates and new running
    statistics; the gradient of the training objective (the tables boxed by
    their logical axes: unbox after). Compares two JAX formulations of one model."""

    @jax.jit
    def run(variables, batch):
        logits, inter = model.apply(variables, batch, train=False, packing=packing)
        (t_logits, t_inter), new = model.apply(variables, batch, train=True, packing=packing, mutable=["batch_stats"])
        loss = lambda p: jax_steps.objective(model.apply, p, variables["batch_stats"], batch, packing=packing)[0]  # noqa: E731
        return {"eval": {"logits": logits, **inter}, "train": {"logits": t_logits, **t_inter, **new},
                "grad": jax.grad(loss)(variables["params"])}

    return run


@contextlib.contextmanager
def prelu_inputs(model: torch.nn.Module):
    """Collects the input of every PReLU of `model` run inside the block."""
    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
             for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    try:
        yield inputs
    finally:
        for hook in hooks:
            hook.remove()


@functools.lru_cache(maxsize=None)
def _apply(model, train: bool):
    def apply(variables, batch):
        if train:
            return model.apply(variables, batch, train=True, mutable=["batch_stats"])
        return model.apply(variables, batch, train=False), {}

    return jax.jit(apply)


@functools.lru_cache(maxsize=None)
def _grads(model):
    """The jitted gradient of the training objective, compiled once per model (not per Twins)."""

    def grads(params, batch_stats, batch, regularizer):
        loss = lambda p: jax_steps.objective(model.apply, p, batch_stats, batch, regularizer=regularizer)[0]  # noqa: E731
        return jax.grad(loss)(params)

    return jax.jit(grads)


_train_step = jax.jit(jax_steps.train_step)
