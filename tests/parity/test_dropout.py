"""Dropout, which every other parity test turns off: in each backend its rate,
its 1 / (1 - p) scaling of the kept values and its place (after Dice or
PReLU, as docs/model.md's MLP layers are), and between the backends the same
train-mode distribution of DIN's output over many dropout draws."""

import jax
import numpy as np
import pytest
import torch

from conftest import shipped_default
from core.config import DINConfig
from din_jax import layers as jax_layers
from din_jax import model as jax_model
from din_torch import layers as torch_layers
from parity.compare import Twins
from parity.synthetic import random_batch, random_schema

X64 = bool(jax.config.jax_enable_x64)
DTYPE = "float64" if X64 else "float32"
P = 0.3
DRAWS = 200  # dropout draws (torch seeds, JAX keys)
ROWS, IN, HIDDEN = 32, 6, 8


def mlp_draws(backend: str, activation: str, dropout: float, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """(train-mode outputs [draws, ROWS, HIDDEN] of a one-layer MLP, one dropout
    draw each; the same MLP's train-mode output with dropout off [ROWS, HIDDEN])."""
    x = np.random.default_rng(0).normal(size=(ROWS, IN)).astype(DTYPE)
    config = DINConfig()
    if backend == "torch":
        torch.manual_seed(0)
        mlp = torch_layers.MLP(IN, (HIDDEN,), activation, dropout, config).to(getattr(torch, DTYPE)).train()
        plain = torch_layers.MLP(IN, (HIDDEN,), activation, 0.0, config).to(getattr(torch, DTYPE)).train()
        plain.load_state_dict(mlp.state_dict())
        outputs = []
        for draw in range(draws):
            torch.manual_seed(1000 + draw)
            outputs.append(mlp(torch.from_numpy(x)).detach().numpy())
        return np.stack(outputs), plain(torch.from_numpy(x)).detach().numpy()

    def module(rate):
        return jax_layers.MLP((HIDDEN,), activation, rate, config, param_dtype=np.dtype(DTYPE))

    mlp = module(dropout)
    variables = mlp.init(jax.random.key(0), x, False)

    @jax.jit
    def run(key):
        out, _ = mlp.apply(variables, x, True, mutable=["batch_stats"], rngs={"dropout": key})
        return out

    plain, _ = module(0.0).apply(variables, x, True, mutable=["batch_stats"])
    keys = jax.random.split(jax.random.key(1), draws)
    return np.stack([np.asarray(run(key)) for key in keys]), np.asarray(plain)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("activation", ["dice", "prelu"])
def test_dropout_rate_scaling_and_place(backend, activation):
    outputs, plain = mlp_draws(backend, activation, P, DRAWS)
    assert np.all(plain != 0)
    dropped = outputs == 0  # [draws, ROWS, HIDDEN]
    n = dropped.size
    assert abs(dropped.mean() - P) < 4 * np.sqrt(P * (1 - P) / n), dropped.mean()  # the rate
    # Every kept value is the activation's output over (1 - p): dropout is the
    # layer's last step, after Dice or PReLU (Dice, not homogeneous, would give
    # other values were dropout before it), and scales by 1 / (1 - p).
    expected = np.broadcast_to(plain / (1 - P), outputs.shape)
    np.testing.assert_allclose(outputs[~dropped], expected[~dropped], rtol=1e-12 if X64 else 1e-5,
                               atol=1e-14 if X64 else 1e-7)
    # A fresh mask each draw, each unit on its own: no unit is always or never dropped.
    per_unit = dropped.mean(axis=0)
    assert 0 < per_unit.min() and per_unit.max() < 1 and not np.array_equal(dropped[0], dropped[1])


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_no_dropout_in_eval_mode(backend):
    rng = np.random.default_rng(3)
    schema = random_schema(rng)
    batch = random_batch(schema, 16, rng, dtype=np.dtype(DTYPE))
    twins = Twins(schema, DINConfig(attention_dropout=0.5, mlp_dropout=0.5), DTYPE, seed=3)
    logits = train_mode_logits(twins, batch, 2, backend, train=False)
    assert np.array_equal(logits[0], logits[1])


def train_mode_logits(twins: Twins, batch: dict, draws: int, backend: str, train: bool = True) -> np.ndarray:
    """[draws, B] logits of DIN with the twins's weights, one dropout draw each."""
    if backend == "torch":
        model = twins.torch.train(train)
        out = []
        for draw in range(draws):
            torch.manual_seed(2000 + draw)
            with torch.no_grad():
                out.append(model(twins.torch_batch(batch))[0].numpy())
        return np.stack(out)

    @jax.jit
    def run(key):
        logits, _ = twins.flax.apply(twins.variables, twins.jax_batch(batch), train=train, mutable=["batch_stats"],
                                    rngs={"dropout": key})
        return logits[0] if isinstance(logits, tuple) else logits

    return np.stack([np.asarray(run(key)) for key in jax.random.split(jax.random.key(2), draws)])


def assert_same_distribution(twins: Twins, batch: dict) -> None:
    """Over many draws each row's mean train-mode logit agrees within its
    standard error across the backends, and so does its spread."""
    state = {k: v.clone() for k, v in twins.torch.state_dict().items()}
    torch_logits = train_mode_logits(twins, batch, DRAWS, "torch")  # [draws, B]
    twins.torch.load_state_dict(state)  # running statistics back: only the draws differ
    jax_logits = train_mode_logits(twins, batch, DRAWS, "jax")
    se = np.sqrt(torch_logits.var(axis=0) / DRAWS + jax_logits.var(axis=0) / DRAWS)  # [B]
    assert np.all(torch_logits.std(axis=0) > 0)
    assert np.all(np.abs(torch_logits.mean(axis=0) - jax_logits.mean(axis=0)) < 4 * se)
    # The spread's standard error is about 1 / sqrt(2 * draws) = 5% of it.
    np.testing.assert_allclose(jax_logits.std(axis=0) / torch_logits.std(axis=0), 1.0, atol=0.25)


def test_train_mode_output_has_the_same_distribution_in_both_backends():
    """Same weights, the tutorial's rates."""
    rng = np.random.default_rng(4)
    schema = random_schema(rng)
    batch = random_batch(schema, 16, rng, dtype=np.dtype(DTYPE))
    assert_same_distribution(Twins(schema, DINConfig(attention_dropout=0.1, mlp_dropout=0.25), DTYPE, seed=4), batch)


@pytest.mark.parametrize("source", ["raw-movielens", "amazon"])
def test_the_shipped_default_trains_in_distribution(source, ml1m_dir, amazon_dir):
    """The configuration a run takes with no flag (tests/parity/test_shipped_default.py
    compares it with dropout off), its own rates on, real rows."""
    config, splits = shipped_default({"raw-movielens": ml1m_dir, "amazon": amazon_dir}[source])
    twins = Twins(splits.encoders.schema(), config, DTYPE, seed=4)
    assert twins.config.attention_dropout > 0 and twins.config.mlp_dropout > 0
    assert_same_distribution(twins, twins.batch(splits.train, np.arange(16)))


@pytest.mark.skipif(X64, reason="dtype-independent: runs in the float32 session")
def test_the_distribution_check_catches_a_rate_on_the_wrong_layer():
    """The check above fails when JAX's two rates trade places (the attention
    MLP's 0.1 on the final MLP and its 0.25 on the attention), torch's right."""
    rng = np.random.default_rng(4)
    schema = random_schema(rng)
    batch = random_batch(schema, 16, rng, dtype=np.dtype(DTYPE))
    twins = Twins(schema, DINConfig(attention_dropout=0.1, mlp_dropout=0.25), DTYPE, seed=4)
    twins.flax = jax_model.DIN(schema, DINConfig(attention_dropout=0.25, mlp_dropout=0.1), param_dtype=np.dtype(DTYPE))
    with pytest.raises(AssertionError):
        assert_same_distribution(twins, batch)
