"""JAX's split attention input (the default: PairDense, a query term once per
example plus key terms per position) against the concatenated
[q, k, q - k, q * k] input, inside JAX: from the same parameters, the same
logits, attention weights, running statistics and gradients. In float32 here,
float64 (1e-12) in tests/test_parity_float64.py's child process; histories
from empty to full, several attention groups, shared tables, --mask-padding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax.traverse_util import flatten_dict

from core.config import DINConfig
from din_jax.model import DIN
from parity.compare import jax_outputs
from parity.diffs import TOLERANCES, diff
from parity.synthetic import random_batch, random_schema

DTYPE = "float64" if jax.config.jax_enable_x64 else "float32"
TOL = TOLERANCES[DTYPE]


@pytest.mark.parametrize("seed, share, mask_padding", [(0, False, True), (3, True, False)])
def test_split_input_equals_concatenated_input(seed, share, mask_padding):
    rng = np.random.default_rng(seed)
    schema = random_schema(rng, groups=2, share=share)
    config = DINConfig(attention_dropout=0.0, mlp_dropout=0.0, mask_padding=mask_padding)
    batch = {k: jnp.asarray(v) for k, v in random_batch(schema, 17, rng, dtype=np.dtype(DTYPE)).items()}
    split = DIN(schema, config, param_dtype=jnp.dtype(DTYPE))
    concat = DIN(schema, config.replace(attention_input="concat"), param_dtype=jnp.dtype(DTYPE))
    assert split.config.attention_input == "split"
    variables = jax.jit(functools.partial(split.init, train=False))(jax.random.key(seed), batch)
    same_tree = jax.eval_shape(lambda: concat.init(jax.random.key(seed), batch, train=False))
    assert jax.tree_util.tree_structure(same_tree) == jax.tree_util.tree_structure(variables)
    # Running statistics away from 0 and 1, so that eval mode normalises with something.
    _, updates = jax.jit(functools.partial(split.apply, train=True, mutable=["batch_stats"]))(variables, batch)
    variables = {"params": variables["params"], **updates}

    outputs = {name: flatten_dict(nn.unbox(jax_outputs(model)(variables, batch)), sep="/")
               for name, model in (("split", split), ("concat", concat))}
    assert any("attention_weights" in k for k in outputs["concat"]) and outputs["split"].keys() == outputs["concat"].keys()
    assert any(k.startswith("grad/") and "attention" in k and "dense_0/kernel" in k for k in outputs["concat"])
    rows = [diff(k, outputs["concat"][k], outputs["split"][k], TOL["grad" if k.startswith("grad/") else "forward"])
            for k in outputs["concat"]]
    bad = [r for r in rows if not r.ok]
    assert not bad, bad

