"""The Flax DIN for inference: eval-mode variables only, and its StableHLO export.

No optimiser state, no training split, no mesh: `Predictor` holds
{params, batch_stats} and one jitted eval-mode forward. Each new batch shape
compiles once; callers pad batches to a few sizes (inference/model.py).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
from jax import export as jax_export
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from core.config import DINConfig
from data.schema import FeatureSchema
from din_jax import packing
from din_jax.chunks import eval_chunk, in_chunks
from din_jax.model import COMPUTE_DTYPES, DIN, example_batch

# Lowered for every platform at once: cross-platform export needs no such hardware.
PLATFORMS = ("cpu", "cuda", "tpu")


def make_model(schema: FeatureSchema, config: DINConfig) -> DIN:
    """Computes in the run's dtype; weights stored in float32."""
    return DIN(schema, config.model, COMPUTE_DTYPES[config.dtype], jnp.float32)


def variable_shapes(schema: FeatureSchema, config: DINConfig) -> dict[str, Any]:
    """{params, batch_stats} as shapes: the template torch weights convert into."""
    model = make_model(schema, config)
    return jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), example_batch(schema), train=False)))


def _stored(x: Any) -> jax.Array:
    x = np.asarray(x)
    return jnp.asarray(x, jnp.float32) if np.issubdtype(x.dtype, np.floating) else jnp.asarray(x)


def _check_fits(variables: dict[str, Any], template: dict[str, Any]) -> None:
    """ValueError naming the first variable whose name or shape differs from the
    model's (weights of another run), before Flax fails deep inside apply."""
    def shapes(tree):
        return {jax.tree_util.keystr(path): tuple(np.shape(x)) for path, x in jax.tree_util.tree_leaves_with_path(tree)}

    found, expected = shapes(variables), shapes(template)
    for name in sorted(set(found) | set(expected)):
        if found.get(name) != expected.get(name):
            raise ValueError(f"variable {name}: the model expects shape {expected.get(name)}, the weights have "
                             f"{found.get(name)}")


class Predictor:
    """Eval-mode DIN: batch -> (logits [B], attention weights per group [B, T])."""

    def __init__(self, schema: FeatureSchema, config: DINConfig, variables: dict[str, Any]):
        self.schema, self.inputs = schema, schema.inputs
        self.model = make_model(schema, config)
        _check_fits(variables, variable_shapes(schema, config))
        self.variables = jax.tree_util.tree_map(_stored, variables)
        self._forward = jax.jit(self._forward_in_chunks, static_argnames=("packing", "chunk"))

    def forward(self, batch: dict[str, jax.Array], packing: str = "auto") -> tuple[jax.Array, dict[str, jax.Array]]:
        logits, intermediates = self.model.apply(self.variables, batch, train=False, packing=packing)
        weights = {g.name: intermediates[f"attention_weights/{g.name}"] for g in self.schema.attention_groups}
        return logits, weights  # [B], {group: [B, T]}

    def _forward_in_chunks(self, batch: dict[str, jax.Array], packing: str, chunk: int | None
                           ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return in_chunks(functools.partial(self.forward, packing=packing), batch, chunk)

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # On a CPU a big batch runs in cache-sized chunks of every position
        # (din_jax/chunks.py); otherwise the attention's packed rows when the batch
        # fits them (checked here, din_jax/packing.py), else every position.
        config = self.model.config
        size = len(batch[self.inputs[0]])
        chunk = eval_chunk(self.schema, config, size)
        fits = not chunk and packing.packs(config, train=False) and packing.fits(
            self.schema, config.history_share, {name: np.asarray(batch[name])[None] for name in self.inputs})
        logits, weights = self._forward({name: batch[name] for name in self.inputs},
                                        packing="checked" if fits else "off", chunk=chunk)
        return np.asarray(logits, np.float32), {g: np.asarray(w, np.float32) for g, w in weights.items()}

    # Export formats -> the artifact file `write` puts in a folder.
    artifacts = {"stablehlo": "model.stablehlo"}

    def write(self, fmt: str, folder: str) -> dict:
        """The `fmt` artifact of probability = sigmoid(logits) into `folder`
        (with model.mlir, the same StableHLO module as text); returns what the
        manifest adds (the platforms it runs on)."""
        exported = self.export()
        with open(os.path.join(folder, self.artifacts[fmt]), "wb") as f:
            f.write(exported.serialize())
        with open(os.path.join(folder, "model.mlir"), "w", encoding="utf-8") as f:
            f.write(exported.mlir_module())
        return {"platforms": list(exported.platforms)}

    def export(self) -> jax_export.Exported:
        """jax.export of probability = sigmoid(logits), inputs positional in
        `schema.inputs` order, the batch dimension symbolic ('batch')."""
        (batch,) = jax_export.symbolic_shape("batch")
        specs = [jax.ShapeDtypeStruct((batch, *x.shape[1:]), x.dtype) for x in example_batch(self.schema).values()]

        def probability(*inputs: jax.Array) -> jax.Array:
            logits, _ = self.forward(dict(zip(self.inputs, inputs)))
            return jax.nn.sigmoid(logits.astype(jnp.float32))  # [batch]

        return jax_export.export(jax.jit(probability), platforms=PLATFORMS)(*specs)
