"""The JAX attention's packed rows (the default: real history positions
packed, one row per example standing for its padding) against every position
as a row (the padded computation, packing "off"), inside JAX: from the same
parameters, the same logits, attention weights, running statistics and
gradients. Each packing: "checked" with rows for every live position, "auto"
with too few (the batch overflows and takes the full-size branch) and with
enough. In float32 here, float64 (1e-12) in tests/test_parity_float64.py's
child process; histories from empty to full, several attention groups,
shared tables, with and without --mask-padding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax.traverse_util import flatten_dict

from din_jax import packing
from core.config import DINConfig
from din_jax.model import DIN
from parity.compare import jax_outputs
from parity.diffs import TOLERANCES, diff
from parity.synthetic import random_batch, random_schema

DTYPE = "float64" if jax.config.jax_enable_x64 else "float32"
TOL = TOLERANCES[DTYPE]


@pytest.mark.parametrize("seed, shared, mask_padding", [(1, False, False), (4, True, True)])
def test_packed_rows_equal_every_position(seed, shared, mask_padding):
    rng = np.random.default_rng(seed)
    schema = random_schema(rng, groups=2, share=shared)
    batch = random_batch(schema, 19, rng, dtype=np.dtype(DTYPE))
    config = DINConfig(attention_dropout=0.0, mlp_dropout=0.0, mask_padding=mask_padding)
    counts = {g.name: packing.live_counts(g, batch) for g in schema.attention_groups}
    assert any((n == 0).any() for n in counts.values())  # an empty history, and a full one
    assert any((n == batch[g.histories[0]].shape[1]).any() for g in schema.attention_groups for n in [counts[g.name]])
    share = max(n.mean() / batch[g.histories[0]].shape[1] for g in schema.attention_groups for n in [counts[g.name]])
    assert 0.2 < share < 0.8  # the fullest group's live share
    # The same rows with half a history more of id 1: more live positions than the packed rows hold.
    longer = dict(batch)
    for group in schema.attention_groups:
        for h in group.histories:
            steps = np.arange(batch[h].shape[1])
            added = (batch[h] == 0) & (steps < counts[group.name][:, None] + len(steps) // 2)
            longer[h] = np.where(added, 1, batch[h])
    model = DIN(schema, config, param_dtype=jnp.dtype(DTYPE))
    packed = DIN(schema, config.replace(history_share=round(share + 0.05, 3)), param_dtype=jnp.dtype(DTYPE))
    history_share = packed.config.history_share
    assert packing.fits(schema, history_share, {k: v[None] for k, v in batch.items()})
    assert not packing.fits(schema, history_share, {k: v[None] for k, v in longer.items()})
    batch, longer = ({k: jnp.asarray(v) for k, v in b.items()} for b in (batch, longer))
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(seed), batch)
    # Running statistics away from 0 and 1, so that eval mode normalises with something.
    _, updates = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(variables, batch)
    variables = {"params": variables["params"], **updates}

    every, checked, auto = jax_outputs(model, "off"), jax_outputs(packed, "checked"), jax_outputs(packed, "auto")
    cases = {"checked": (checked, batch), "auto": (auto, batch), "auto, overflowing": (auto, longer)}
    for case, (run, data) in cases.items():
        reference = flatten_dict(nn.unbox(every(variables, data)), sep="/")
        assert any("attention_weights" in k for k in reference)
        assert any(k.startswith("grad/") and "attention" in k and "dense_1/kernel" in k for k in reference)
        outputs = flatten_dict(nn.unbox(run(variables, data)), sep="/")
        assert outputs.keys() == reference.keys()
        rows = [diff(k, reference[k], outputs[k], TOL["grad" if k.startswith("grad/") else "forward"]) for k in reference]
        bad = [r for r in rows if not r.ok]
        assert not bad, (case, bad)

