"""The paper's options (docs/model.md, "Beyond the tutorial"): each one's defining
property, checked in both backends. Their torch/Flax parity is in tests/parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax.traverse_util import flatten_dict

from core.config import DINConfig
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature
from din_jax import layers as jax_layers
from din_jax import model as jax_model
from din_jax import steps as jax_steps
from din_torch import layers as torch_layers
from din_torch import model as torch_model
from din_torch import steps as torch_steps
from parity.synthetic import random_batch, random_schema
from training.regularization import mba_scales, occurrences

BACKENDS = ["torch", "jax"]


def forward(backend, schema, config, batch, train=False, seed=0, edit=None):
    """(logits, intermediates) as numpy from a fresh model; edit(tables) may set embedding tables first."""
    if backend == "torch":
        torch.manual_seed(seed)
        model = torch_model.DIN(schema, config).train(train)
        if edit:
            with torch.no_grad():
                edit({name: table.weight for name, table in model.embeddings.tables.items()})
        logits, inter = model({k: torch.from_numpy(v) for k, v in batch.items()})
        return logits.detach().numpy(), {k: v.detach().numpy() for k, v in inter.items()}
    model = jax_model.DIN(schema, config)
    variables = nn.unbox(jax.jit(model.init)(jax.random.key(seed), batch))
    if edit:
        tables = {name[len("tables_"):]: np.array(t["embedding"]) for name, t in variables["params"]["embeddings"].items()}
        edit(tables)
        params = dict(variables["params"], embeddings={f"tables_{n}": {"embedding": t} for n, t in tables.items()})
        variables = dict(variables, params=params)
    apply = jax.jit(lambda v, b: model.apply(v, b, train=train, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}))
    (logits, inter), _ = apply(variables, batch)  # jitted: eager Flax runs op by op, slowly
    return np.asarray(logits), {k: np.asarray(v) for k, v in inter.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_softmax_weights_sum_to_one_over_real_positions(backend, train):
    rng = np.random.default_rng(0)
    schema = random_schema(rng, groups=1)
    batch = random_batch(schema, 16, rng)  # row 1 has an empty history
    config = DINConfig(attention_norm="softmax", attention_dropout=0.0, mlp_dropout=0.0)
    _, inter = forward(backend, schema, config, batch, train)
    group = schema.attention_groups[0]
    weights = inter[f"attention_weights/{group.name}"]  # [B, T]
    real = np.min([batch[h] != 0 for h in group.histories], axis=0)  # [B, T]
    assert np.all(weights[~real] == 0.0)
    has_history = real.any(axis=1)
    assert not has_history[1] and has_history.sum() > 1
    np.testing.assert_allclose(weights.sum(axis=1)[has_history], 1.0, rtol=1e-6)
    assert np.all(weights[1] == 0.0) and np.all(inter[f"interest/{group.name}"][1] == 0.0)  # zero vector, no NaN


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_gradients_are_finite_with_an_all_padding_history(backend):
    rng = np.random.default_rng(1)
    schema = random_schema(rng, groups=1)
    batch = random_batch(schema, 8, rng)
    config = DINConfig(attention_norm="softmax", mask_padding=True)
    if backend == "torch":
        torch.manual_seed(0)
        model = torch_model.DIN(schema, config).train()
        torch_steps.objective(model, {k: torch.from_numpy(v) for k, v in batch.items()}).backward()
        grads = [p.grad.numpy() for p in model.parameters()]
    else:
        model = jax_model.DIN(schema, config)
        state = jax_steps.create_state(model, batch, config, seed=0)
        grad = jax.jit(jax.grad(lambda p: jax_steps.objective(state.apply_fn, p, state.batch_stats, batch, {"dropout": state.rng})[0]))
        grads = jax.tree_util.tree_leaves(grad(state.params))
    assert all(np.all(np.isfinite(g)) for g in grads)


def pooled_schema():
    return FeatureSchema(
        numeric=("n",),
        categorical=(CategoricalFeature("item", 5),),
        sequence=(SequenceFeature("tags", 6, 4), SequenceFeature("hist", 5, 3)),
        attention_groups=(AttentionGroup("g", (("item", "hist"),)),),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_padding", [False, True])
def test_masked_max_pooling_ignores_padding(backend, mask_padding):
    """With every embedding negative, a padded zero wins the tutorial's max; the masked max ignores it."""
    schema = pooled_schema()
    tags = np.array([[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0], [5, 4, 3, 2]], np.int32)
    batch = {
        "n": np.zeros(4, np.float32),
        "item": np.array([1, 2, 3, 4], np.int32),
        "tags": tags,
        "hist": np.array([[1, 2, 0], [2, 0, 0], [0, 0, 0], [3, 4, 1]], np.int32),
        "label": np.zeros(4, np.float32),
    }
    table = -1.0 - np.random.default_rng(0).uniform(size=(6, 16)).astype(np.float32)
    table[0] = 0.0

    def edit(tables):
        tables["tags"][...] = torch.from_numpy(table) if backend == "torch" else table

    config = DINConfig(mask_padding=mask_padding)
    _, inter = forward(backend, schema, config, batch, edit=edit)
    pooled = inter["mlp_input"][:, 1 + 16 : 1 + 32]  # after numeric and `item`
    masked = np.stack([table[row[row != 0]].max(axis=0) if (row != 0).any() else np.zeros(16) for row in tags])
    expected = masked if mask_padding else table[tags].max(axis=1)  # padding rows take part as 0
    np.testing.assert_array_equal(pooled, expected)
    if mask_padding:
        assert np.all(pooled[2] == 0.0)  # all padding pools to zeros
        assert np.all(pooled[:2] < 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_batchnorm_learns_from_real_rows_only(backend):
    """Train-mode statistics with a row mask equal plain BatchNorm on the real rows."""
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (10, 4)).astype(np.float32)
    mask = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], bool)
    reference = torch.nn.BatchNorm1d(4, momentum=0.1).train()
    expected = reference(torch.from_numpy(x[mask])).detach().numpy()
    if backend == "torch":
        bn = torch_layers.BatchNorm(4, momentum=0.1).train()
        out = bn(torch.from_numpy(x), torch.from_numpy(mask)).detach().numpy()
        mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
    else:
        bn = jax_layers.BatchNorm(1e-5, 0.1)
        variables = bn.init(jax.random.key(0), x, False)
        variables = dict(variables, params={"scale": jnp.ones(4), "bias": jnp.zeros(4)})
        (out, _), updates = bn.apply(variables, x, True, jnp.asarray(mask), mutable=["batch_stats"])
        out, mean, var = np.asarray(out), updates["batch_stats"]["mean"], updates["batch_stats"]["var"]
    np.testing.assert_allclose(out[mask], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, reference.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(var, reference.running_var.numpy(), rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_padding_makes_attention_statistics_blind_to_padded_positions(backend):
    """Changing what sits in padded positions (via a longer max_len) leaves every running statistic unchanged."""
    rng = np.random.default_rng(3)
    schema = random_schema(rng, groups=1)
    batch = random_batch(schema, 12, rng)
    group = schema.attention_groups[0]
    wider_schema = FeatureSchema(
        schema.numeric,
        schema.categorical,
        tuple(SequenceFeature(f.name, f.vocab_size, f.max_len + (3 if f.name in group.histories else 0)) for f in schema.sequence),
        schema.attention_groups,
    )
    wider = dict(batch, **{h: np.pad(batch[h], ((0, 0), (0, 3))) for h in group.histories})

    def stats(s, b, mask_padding):
        config = DINConfig(mask_padding=mask_padding, attention_dropout=0.0, mlp_dropout=0.0)
        if backend == "torch":
            torch.manual_seed(0)
            model = torch_model.DIN(s, config).train()
            model({k: torch.from_numpy(v) for k, v in b.items()})
            return {k: v.numpy() for k, v in model.state_dict().items() if "attention" in k and "running" in k}
        model = jax_model.DIN(s, config)
        variables = jax.jit(model.init)(jax.random.key(0), b)
        _, updates = jax.jit(lambda v: model.apply(v, b, train=True, mutable=["batch_stats"]))(variables)
        return {"/".join(k): np.asarray(v) for k, v in flatten_dict(updates["batch_stats"]).items() if "count" not in k[-1]}

    for mask_padding in (True, False):
        narrow, wide = stats(schema, batch, mask_padding), stats(wider_schema, wider, mask_padding)
        same = all(np.allclose(narrow[k], wide[k], rtol=1e-5, atol=1e-6) for k in narrow)
        assert same == mask_padding, f"mask_padding={mask_padding}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_dice_has_no_affine_batchnorm(backend):
    schema = random_schema(np.random.default_rng(4), groups=1)
    config = DINConfig(dice="paper")
    if backend == "torch":
        names = set(torch_model.DIN(schema, config).state_dict())
        dice_names = {n for n in names if ".activation." in n and n.startswith("attention")}
    else:
        variables = jax.eval_shape(jax_model.DIN(schema, config).init, jax.random.key(0), random_batch(schema, 2, np.random.default_rng(0)))
        dice_names = {"/".join(k) for k in flatten_dict(variables) if any(p.startswith("activation_") for p in k) and "attention" in k[1]}
    assert dice_names and not any(n.endswith(("weight", "scale", "batchnorm/bias", "batchnorm.bias")) for n in dice_names)
    assert any("alpha" in n for n in dice_names) and any("mean" in n for n in dice_names)


def item_history_schema(items: int, history_items: int, shared: bool = False) -> FeatureSchema:
    """One query `item` and its history `hist` (max_len 3), nothing else."""
    return FeatureSchema(
        numeric=(),
        categorical=(CategoricalFeature("item", items),),
        sequence=(SequenceFeature("hist", history_items, 3),),
        attention_groups=(AttentionGroup("g", (("item", "hist"),)),),
        shared=(("hist", "item"),) if shared else (),
    )


def test_occurrences_count_every_column_of_a_shared_table():
    schema = item_history_schema(5, 5, shared=True)
    train = {"item": np.array([1, 1, 2]), "hist": np.array([[2, 3, 0], [1, 0, 0], [3, 3, 2]])}
    assert occurrences(schema, train)["item"].tolist() == [0, 3, 3, 3, 0]
    np.testing.assert_allclose(mba_scales(schema, train, 0.6)["item"], [0, 0.2, 0.2, 0.2, 0])


def mba_setup():
    schema = item_history_schema(6, 7)
    train = {"item": np.array([1, 1, 2, 3, 4, 1]), "hist": np.array([[1, 2, 0]] * 4 + [[5, 5, 5]] * 2)}
    # n_item = [_, 3, 1, 1, 1, 0], n_hist = [_, 4, 4, 0, 0, 6, 0]
    batch = {"item": np.array([1, 2, 2], np.int32), "hist": np.array([[5, 0, 0], [2, 5, 0], [0, 0, 0]], np.int32)}
    return schema, mba_scales(schema, train, 0.3), batch


@pytest.mark.parametrize("backend", BACKENDS)
def test_mba_update_touches_only_batch_rows_scaled_by_one_over_n(backend):
    """One SGD step on the regulariser alone, against eq. 5 by hand: w_j -= lr * lambda / n_j * w_j."""
    schema, scales, batch = mba_setup()
    lr, lam = 0.5, 0.3
    rng = np.random.default_rng(5)
    tables = {"item": rng.normal(size=(6, 4)), "hist": rng.normal(size=(7, 4))}
    if backend == "torch":
        model = torch_model.DIN(schema, DINConfig(embedding_dim=4)).double()
        with torch.no_grad():
            for name, value in tables.items():
                model.embeddings.tables[name].weight.copy_(torch.from_numpy(value))
        regularizer = torch_steps.MiniBatchAwareL2(schema, scales)
        regularizer(model, {k: torch.from_numpy(v) for k, v in batch.items()}).backward()
        grads = {name: model.embeddings.tables[name].weight.grad.numpy() for name in tables}
    else:
        regularizer = jax_steps.MiniBatchAwareL2.create(schema, scales)
        params = {"embeddings": {f"tables_{n}": {"embedding": jnp.asarray(v, jnp.float32)} for n, v in tables.items()}}
        g = jax.grad(regularizer)(params, {k: jnp.asarray(v) for k, v in batch.items()})
        grads = {n: np.asarray(g["embeddings"][f"tables_{n}"]["embedding"]) for n in tables}
    expected = {name: value.copy() for name, value in tables.items()}
    expected["item"][1] -= lr * lam / 3 * tables["item"][1]  # item 1: in the batch, n = 3
    expected["item"][2] -= lr * lam / 1 * tables["item"][2]  # item 2: twice in the batch, once per batch counts
    expected["hist"][2] -= lr * lam / 4 * tables["hist"][2]
    expected["hist"][5] -= lr * lam / 6 * tables["hist"][5]
    for name in tables:  # rows 0 (padding), and those absent from the batch, do not move
        np.testing.assert_allclose(tables[name] - lr * grads[name], expected[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mba_takes_the_embeddings_out_of_weight_decay(backend):
    schema, scales, batch = mba_setup()
    config = DINConfig(mba_reg=0.3, embedding_weight_decay=0.1, attention_weight_decay=0.1, mlp_weight_decay=0.1)
    if backend == "torch":
        model = torch_model.DIN(schema, config)
        optimizer = torch_steps.make_optimizer(model, config, fused=False)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)  # only the decay moves a parameter
        optimizer.step()
        moved = {n: not torch.equal(before[n], p) for n, p in model.named_parameters()}
    else:
        params = nn.unbox(jax.jit(jax_model.DIN(schema, config).init)(jax.random.key(0), batch))["params"]
        tx = jax_steps.make_optimizer(config)
        updates, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
        moved = {"/".join(k): bool(np.any(np.asarray(v) != 0)) for k, v in flatten_dict(updates).items()}
    tables = [n for n in moved if "embeddings" in n]
    assert len(tables) == 2 and not any(moved[n] for n in tables)
    assert moved["final.weight" if backend == "torch" else "final/kernel"]  # the rest still decays
