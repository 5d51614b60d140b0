"""The fast training path (device-resident data, scanned blocks, masked padding
of the short batch, skipped filler steps, the attention's packed rows where a
block fits them and every position where it does not) against the plain one:
one jitted train_step per batch, each batch gathered on the host at its own
size; and evaluation, which chooses packed rows or every position per batch,
against every position."""

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from din_jax import packing
from core.config import DINConfig
from data.batches import epoch_batches, take
from din_jax.backend import JaxBackend
from din_jax.steps import one_batch, train_step
from parity.diffs import TOLERANCES, diff
from parity.synthetic import random_batch, random_schema

DTYPE = "float64" if jax.config.jax_enable_x64 else "float32"


def test_fast_path_gives_the_parameters_of_the_plain_path():
    rng = np.random.default_rng(11)
    schema = random_schema(rng)
    # Decay on the attention too: without it the Dense biases that feed a BatchNorm (true
    # gradient 0) step by each program's rounding noise over Adam's eps (tests/parity/test_parity.py).
    config = DINConfig(attention_dropout=0.0, mlp_dropout=0.0, batch_size=32, attention_weight_decay=0.001)
    data = random_batch(schema, 150, rng)  # 4 full batches of 32 and one of 22
    # Packed rows for the 70th percentile of a batch's live share: some blocks fit, some take every position.
    group = schema.attention_groups[0]
    live = packing.live_counts(group, data) / data[group.histories[0]].shape[1]  # [rows]
    share = np.quantile([live[rows].mean() for e in (1, 2, 3) for rows in epoch_batches(150, 32, 0, e)], 0.7)
    fast_config = config.replace(steps_per_call=3, param_dtype=DTYPE, history_share=round(share, 3))
    fast = JaxBackend(schema, fast_config)
    choices = []
    choose = fast._packing
    fast._packing = lambda *args, **kwargs: choices.append(choose(*args, **kwargs)) or choices[-1]
    # The streamed input path checks each block's histories as it gathers them.
    streamed = JaxBackend(schema, fast_config.replace(input="stream"))
    state = jax.tree_util.tree_map(jnp.copy, fast.state)  # a copy: the fast path donates its state's buffers
    step = jax.jit(train_step)
    for epoch in (1, 2, 3):
        batches = epoch_batches(150, 32, 0, epoch)
        fast.train_batches(data, batches, lambda n: None)
        streamed.train_batches(data, batches, lambda n: None)
        for rows in batches:
            state, _ = step(state, one_batch({k: jnp.asarray(v) for k, v in take(data, rows).items()}))
    assert int(fast.state.step) == int(state.step) == 15
    assert sorted(set(choices)) == ["checked", "off"], choices
    tolerance = TOLERANCES[DTYPE]
    plain_weights = flatten_dict({"params": state.params, "batch_stats": state.batch_stats}, sep="/")  # as weights() names them
    rows = [diff(name, plain_weights[name], value, tolerance["steps"], tolerance["steps_rtol"])
            for name, value in fast.weights().items()]
    assert rows and len(rows) == len(plain_weights)
    bad = [r for r in rows if not r.ok]
    assert not bad, bad

    same = [diff(name, value, streamed.weights()[name], tolerance["steps"], tolerance["steps_rtol"])
            for name, value in fast.weights().items()]
    assert all(r.ok for r in same), [r for r in same if not r.ok]

    # Evaluation chooses per batch on the host too; every position (history_share 1) gives the same logits.
    choices.clear()
    every = JaxBackend(schema, config.replace(param_dtype=DTYPE, history_share=1.0))
    every.load_weights(fast.weights())
    logits = diff("eval logits", every.predict(data, 8), fast.predict(data, 8), tolerance["forward"])
    assert logits.ok, logits
    assert sorted(set(choices)) == ["checked", "off"], choices


def test_evaluation_in_chunks_equals_the_whole_batch(monkeypatch):
    """din_jax/chunks.py: a CPU evaluates a big batch a chunk of rows at a
    time; the backend's evaluation and the Predictor (logits and attention
    weights) give what the whole batch gives, a last chunk filled included."""
    from din_jax import chunks
    from din_jax.inference import Predictor

    rng = np.random.default_rng(12)
    schema = random_schema(rng, groups=2)
    config = DINConfig(param_dtype=DTYPE, history_share=0.6)
    data = random_batch(schema, 150, rng)
    inputs = {name: data[name][:37] for name in schema.inputs}
    backend = JaxBackend(schema, config)
    variables = {"params": backend.state.params, "batch_stats": backend.state.batch_stats}

    def evaluate(chunk_bytes):
        monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk_bytes)
        chunk = chunks.eval_chunk(schema, backend.model.config, 37)
        logits, weights = Predictor(schema, config, variables)(inputs)
        return chunk, backend.predict(data, 37), logits, weights

    positions = sum(schema.history_length(group) for group in schema.attention_groups)  # a row's attention positions
    row_bytes = positions * max(config.attention_hidden) * 4
    chunked = evaluate(8 * row_bytes)
    whole = evaluate(1 << 40)
    assert (chunked[0], whole[0]) == (8, None)  # 37 rows: four chunks of 8 and one filled with 3 zero rows
    assert diff("eval logits", whole[1], chunked[1], TOLERANCES[DTYPE]["forward"]).ok
    tolerance = TOLERANCES["float32"]["forward"]  # the Predictor stores and computes float32
    assert diff("predictor logits", whole[2], chunked[2], tolerance).ok
    for group, weights in whole[3].items():
        assert diff(f"attention {group}", weights, chunked[3][group], tolerance).ok
