import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.config import DINConfig
from data.batches import epoch_batches
from data.schema import LABEL, ROW_MASK
from din_jax.backend import JaxBackend
from din_jax.attention import AttentionUnit
from din_jax.layers import MLP, BatchNorm, Dice
from din_jax.model import DIN
from din_jax.steps import create_state, loss_fn
from parity.synthetic import random_batch, random_schema

CONFIG = DINConfig()
NO_DROPOUT = CONFIG.replace(attention_dropout=0.0, mlp_dropout=0.0)


def torch_batchnorm_reference(x, mean, var, scale, bias, eps, momentum, train):
    """torch.nn.BatchNorm1d's formulas in numpy: (output, new running mean, new running var)."""
    if not train:
        return (x - mean) / np.sqrt(var + eps) * scale + bias, mean, var
    batch_mean, batch_var = x.mean(0), x.var(0)  # biased, for normalising
    unbiased = x.var(0, ddof=1)  # unbiased, for the running estimate
    out = (x - batch_mean) / np.sqrt(batch_var + eps) * scale + bias
    return out, (1 - momentum) * mean + momentum * batch_mean, (1 - momentum) * var + momentum * unbiased


class TestBatchNormAndDice:
    def _run(self, module, xs, train_steps_count):
        variables = module.init(jax.random.key(0), xs[0], False)
        outputs = []
        for x in xs[:train_steps_count]:
            y, updates = module.apply(variables, x, True, mutable=["batch_stats"])
            variables = {"params": variables["params"], **updates}
            outputs.append(y)
        outputs.append(module.apply(variables, xs[-1], False))
        return variables, outputs

    def test_batchnorm_matches_torch_formulas_train_and_eval(self):
        rng = np.random.default_rng(0)
        xs = [rng.normal(3.0, 2.0, (7, 5)).astype(np.float32) for _ in range(5)]
        variables, outputs = self._run(BatchNorm(1e-5, 0.1), xs, 4)
        outputs = [out for out, _ in outputs]  # (out, its Moments)
        p = variables["params"]
        scale, bias = np.asarray(p["scale"]), np.asarray(p["bias"])
        mean, var = np.zeros(5), np.ones(5)
        for x, y in zip(xs[:4], outputs[:4]):
            expected, mean, var = torch_batchnorm_reference(x, mean, var, scale, bias, 1e-5, 0.1, True)
            np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(variables["batch_stats"]["mean"], mean, rtol=1e-6)
        np.testing.assert_allclose(variables["batch_stats"]["var"], var, rtol=1e-6)
        assert int(variables["batch_stats"]["num_batches_tracked"]) == 4
        expected, _, _ = torch_batchnorm_reference(xs[4], mean, var, scale, bias, 1e-5, 0.1, False)
        np.testing.assert_allclose(outputs[4], expected, rtol=1e-5, atol=1e-5)

    def test_dice_matches_its_formula(self):
        rng = np.random.default_rng(1)
        xs = [rng.normal(0.0, 1.0, (6, 3)).astype(np.float32) for _ in range(3)]
        module = Dice(1e-8, 0.1)
        variables = module.init(jax.random.key(0), xs[0], False)
        variables["params"]["alpha"] = jnp.asarray([0.5, -0.25, 1.0])
        y, updates = module.apply(variables, xs[0], True, mutable=["batch_stats"])
        bn = variables["params"]["batchnorm"]
        normed, mean, var = torch_batchnorm_reference(
            xs[0], np.zeros(3), np.ones(3), np.asarray(bn["scale"]), np.asarray(bn["bias"]), 1e-8, 0.1, True
        )
        p = 1 / (1 + np.exp(-normed))
        alpha = np.array([0.5, -0.25, 1.0])
        np.testing.assert_allclose(y, alpha * (1 - p) * xs[0] + p * xs[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(updates["batch_stats"]["batchnorm"]["var"], var, rtol=1e-6)

    def test_mask_gives_the_statistics_of_the_real_rows(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(8, 4)).astype(np.float32)
        mask = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)
        module = BatchNorm(1e-5, 0.1)
        variables = module.init(jax.random.key(0), x, False)
        (y_masked, _), s_masked = module.apply(variables, x, True, mask, mutable=["batch_stats"])
        (y_short, _), s_short = module.apply(variables, x[mask > 0], True, mutable=["batch_stats"])
        np.testing.assert_allclose(y_masked[mask > 0], y_short, rtol=1e-5, atol=1e-6)
        for key in ("mean", "var"):
            np.testing.assert_allclose(s_masked["batch_stats"][key], s_short["batch_stats"][key], rtol=1e-6)

    @pytest.mark.parametrize("affine", [True, False])
    def test_moments_of_the_output_are_its_weighted_statistics(self, affine):
        """The Moments BatchNorm returns for Dice equal a pass over its output,
        and Dice given them computes what it computes without them."""
        rng = np.random.default_rng(3)
        x = rng.normal(2.0, 3.0, (9, 4))
        mask = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1], np.float64)
        module = BatchNorm(1e-5, 0.1, affine=affine)
        variables = module.init(jax.random.key(0), x, False)
        if affine:  # away from the initial scale 1 and bias 0
            variables["params"] = {"scale": jnp.asarray([0.5, 2.0, -1.5, 1.0]), "bias": jnp.asarray([1.0, -2.0, 0.0, 3.0])}
        (y, moments), _ = module.apply(variables, x, True, mask, mutable=["batch_stats"])
        y, real = np.asarray(y, np.float64), mask > 0
        np.testing.assert_allclose(moments.mean, y[real].mean(0), atol=1e-5)
        np.testing.assert_allclose(moments.var, y[real].var(0), rtol=1e-5)
        assert float(moments.count) == real.sum()
        np.testing.assert_allclose(moments.centred, y - moments.mean, atol=1e-6)  # every row, weighted or not

        dice = Dice(1e-8, 0.1)
        dice_variables = dice.init(jax.random.key(1), y, False)
        given = dice.apply(dice_variables, y, True, mask, moments, mutable=["batch_stats"])
        computed = dice.apply(dice_variables, y, True, mask, mutable=["batch_stats"])
        for a, b in zip(jax.tree_util.tree_leaves(given), jax.tree_util.tree_leaves(computed)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_attention_hand_computed_example_batch_of_one():
    unit = AttentionUnit(NO_DROPOUT, False)
    query, keys, length = jnp.zeros((1, 2)), jnp.asarray([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]), jnp.asarray([2])
    variables = unit.init(jax.random.key(0), query, keys, length)
    variables["params"]["fc"]["kernel"] = jnp.zeros_like(variables["params"]["fc"]["kernel"])
    variables["params"]["fc"]["bias"] = jnp.full((1,), 2 * math.sqrt(2))
    interest, weights = unit.apply(variables, query, keys, length)
    s = 1 / (1 + math.exp(-2))
    np.testing.assert_allclose(weights, [[s, s, 0.0]], rtol=1e-6)
    assert float(weights[0, 2]) == 0.0
    np.testing.assert_allclose(interest, [[4 * s, 6 * s]], rtol=1e-6)


def plain_batched_attention(variables, query, keys, length, config, train):
    """The tutorial's batched formulation: one MLP over [B*T, 4D] rows, nothing packed."""
    batch, steps, dim = keys.shape
    queries = jnp.broadcast_to(query[:, None, :], keys.shape)
    x = jnp.concatenate([queries, keys, queries - keys, queries * keys], axis=-1).reshape(batch * steps, 4 * dim)
    mlp = MLP(config.attention_hidden, "dice", 0.0, config)
    mlp_vars = {"params": variables["params"]["mlp"], "batch_stats": variables["batch_stats"]["mlp"]}
    hidden, updates = mlp.apply(mlp_vars, x, train, mutable=["batch_stats"])
    fc = variables["params"]["fc"]
    scores = (hidden @ fc["kernel"] + fc["bias"]).reshape(batch, steps) / math.sqrt(dim)
    weights = jax.nn.sigmoid(jnp.where(jnp.arange(steps)[None, :] < length[:, None], scores, -jnp.inf))
    return jnp.einsum("bt,btd->bd", weights, keys), weights, updates["batch_stats"]


@pytest.mark.parametrize("train", [False, True])
def test_attention_equals_plain_batched_attention(train):
    rng = np.random.default_rng(3)
    query = rng.normal(size=(6, 4)).astype(np.float32)
    keys = rng.normal(size=(6, 5, 4)).astype(np.float32)
    length = np.array([5, 0, 3, 1, 5, 2])
    unit = AttentionUnit(NO_DROPOUT, train)
    variables = unit.init(jax.random.key(1), query, keys, length)
    (interest, weights), updates = unit.apply(variables, query, keys, length, mutable=["batch_stats"])
    plain_interest, plain_weights, plain_stats = plain_batched_attention(variables, query, keys, length, NO_DROPOUT, train)
    np.testing.assert_allclose(interest, plain_interest, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, plain_weights, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(updates["batch_stats"]["mlp"]), jax.tree_util.tree_leaves(plain_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_no_gradient_flows_into_padded_keys():
    rng = np.random.default_rng(4)
    query, keys = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 5, 4)).astype(np.float32)
    length = np.array([2, 5, 0])
    unit = AttentionUnit(NO_DROPOUT, False)
    variables = unit.init(jax.random.key(2), query, keys, length)
    grad = jax.grad(lambda k: unit.apply(variables, query, k, length)[0].sum())(keys)
    padded = np.arange(5)[None, :] >= length[:, None]
    assert np.all(np.asarray(grad)[padded] == 0.0)
    assert np.all(np.abs(np.asarray(grad)[~padded]).sum(-1) > 0)


@pytest.mark.parametrize("size", [1, 2, 128])
def test_forward_gives_one_logit_per_example(size):
    schema = random_schema(np.random.default_rng(1))
    model = DIN(schema, CONFIG)
    batch = random_batch(schema, size, np.random.default_rng(2))
    variables = jax.jit(model.init)(jax.random.key(0), batch)  # jitted: one compilation, not one per operation
    logits, intermediates = jax.jit(model.apply)(variables, batch)
    assert logits.shape == (size,)
    assert intermediates["mlp_input"].shape == (size, schema.mlp_input_dim(CONFIG.embedding_dim))


def test_training_on_a_batch_of_one_is_an_error():
    schema = random_schema(np.random.default_rng(1))
    model = DIN(schema, CONFIG)
    batch = random_batch(schema, 1, np.random.default_rng(2))
    variables = jax.jit(model.init)(jax.random.key(0), batch)
    with pytest.raises(ValueError, match="batch of one"):
        model.apply(variables, batch, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})


def test_padded_masked_batch_trains_exactly_like_the_short_batch():
    """Loss, gradients and new BatchNorm statistics of a short batch equal those
    of the same batch padded with masked rows. (Parameters after an Adam step are
    not compared in float32: Adam divides by |gradient|, which turns rounding in
    near-zero gradients into visible steps; float64 parity covers the steps.)"""
    rng = np.random.default_rng(5)
    schema = random_schema(rng)
    model = DIN(schema, NO_DROPOUT)
    short = random_batch(schema, 5, rng)
    state = create_state(model, short, NO_DROPOUT, seed=0)
    padded = {k: np.concatenate([v, v[:3]]) for k, v in short.items()}
    padded[ROW_MASK] = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)

    @jax.jit
    def loss_grads_stats(params, batch):
        def loss(params):
            (logits, _), updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, batch, train=True, mutable=["batch_stats"]
            )
            return loss_fn(logits, batch[LABEL], batch.get(ROW_MASK)), updates["batch_stats"]

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, stats

    for a, b in zip(
        jax.tree_util.tree_leaves(loss_grads_stats(state.params, short)),
        jax.tree_util.tree_leaves(loss_grads_stats(state.params, padded)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_backend_trains_with_one_compilation_and_keeps_padding_rows_zero():
    rng = np.random.default_rng(6)
    schema = random_schema(rng)
    data = random_batch(schema, 203, rng)  # 203 = 3 * 64 + 11: a short last batch
    backend = JaxBackend(schema, CONFIG.replace(batch_size=64, steps_per_call=2))
    losses = [backend.train_batches(data, epoch_batches(203, 64, 0, epoch), lambda n: None).mean() for epoch in (1, 2, 3)]
    assert backend._train_step._cache_size() == 1  # every block of every epoch: one shape
    assert all(np.isfinite(losses))
    for name, table in backend.state.params["embeddings"].items():
        assert np.all(np.asarray(table["embedding"][0]) == 0.0), name
    assert int(backend.state.step) == 3 * 4  # skipped filler steps do not count
    logits = backend.predict(data, 64)
    assert logits.shape == (203,) and np.isfinite(logits).all()


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_keeps_state_and_loss_in_float32(tutorial_splits):
    """--dtype bfloat16: activations bfloat16; parameters, Adam moments, BatchNorm
    statistics, logits and loss float32; it trains, and its logits track float32's."""
    schema = tutorial_splits.encoders.schema()
    config = CONFIG.replace(dtype="bfloat16", batch_size=256)
    backend = JaxBackend(schema, config)
    reference = JaxBackend(schema, config.replace(dtype="float32"))  # same seed: the same initial weights
    batch = {k: jnp.asarray(v[:64]) for k, v in tutorial_splits.train.items() if k != "user_id"}
    apply = jax.jit(functools.partial(backend.model.apply, train=True, mutable=["batch_stats"]))  # one compilation
    (logits, inter), _ = apply({"params": backend.state.params, "batch_stats": backend.state.batch_stats}, batch,
                               rngs={"dropout": jax.random.key(0)})
    assert inter["mlp_input"].dtype == jnp.bfloat16 and logits.dtype == jnp.float32
    t_logits = reference.predict(tutorial_splits.test, 1024)
    b_logits = backend.predict(tutorial_splits.test, 1024)
    assert np.corrcoef(t_logits, b_logits)[0, 1] > 0.999  # bfloat16 rounding only

    n = len(tutorial_splits.train[LABEL])
    losses = [backend.train_batches(tutorial_splits.train, epoch_batches(n, 256, 0, e), lambda k: None).mean() for e in (1, 2, 3)]
    assert losses[-1] < losses[0]
    state = backend.state
    for tree in (state.params, state.batch_stats, state.opt_state):
        floats = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and all(x.dtype == jnp.float32 for x in floats)
