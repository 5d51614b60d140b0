"""The configuration a user trains with when no flag is given, whole, in both
frameworks: each source's defaults resolved as train.py resolves them
(training/resolve.py) on synthetic data that needs no download. Raw
MovieLens in the sequential protocol: the paper's sizes, the softmax
attention, two attention groups (liked and low-rated histories), the user id
and the JAX backend's packed attention rows; Amazon: DINConfig's defaults on
its two-twins history. Forward, gradients and optimiser steps with dropout off
(float32 here, float64 with a hundred steps in tests/test_parity_float64.py's
child); with dropout on, tests/parity/test_dropout.py compares the train-mode
outputs in distribution."""

import jax
import numpy as np
import pytest

from conftest import shipped_default
from data.batches import epoch_batches
from parity.compare import Twins
from parity.diffs import format_table

X64 = bool(jax.config.jax_enable_x64)
DTYPE = "float64" if X64 else "float32"
# float32 steps with decay on the attention too (STEP_DECAY in test_parity.py)
# and Adam's eps at 1e-6 (ZERO_GRADIENT_BIASES there): a weight whose gradient
# is near eps (one of the 80 x 40 in the low-rated group's attention MLP) or
# a zero-gradient bias steps by its rounding noise over eps otherwise, lr-sized
# in float32 (seen: 4.4e-5 in one step from the same state). float64 compares
# the shipped decays and eps.
STEP_DECAY = {} if X64 else {"attention_weight_decay": 0.001, "adam_eps": 1e-6}
STEPS = 100 if X64 else 10
SOURCES = ("raw-movielens", "amazon")


@pytest.fixture(params=SOURCES)
def source(request, ml1m_dir, amazon_dir):
    folder = {"raw-movielens": ml1m_dir, "amazon": amazon_dir}[request.param]
    config, splits = shipped_default(folder)
    return request.param, config, splits


def assert_within(rows):
    bad = [r for r in rows if not r.ok]
    assert not bad, "over tolerance:\n" + format_table(bad)


def test_the_defaults_are_what_ships(source):
    name, config, splits = source
    schema = splits.encoders.schema()
    if name == "raw-movielens":
        assert (config.embedding_dim, config.attention_hidden, config.mlp_hidden) == (12, (80, 40), (200, 80))
        assert config.attention_norm == "softmax" and config.user_feature and config.low_rated_history
        assert config.mask_padding  # padded positions out of the attention's statistics
        assert len(schema.attention_groups) == 2 and "userId" in [f.name for f in schema.categorical]
        assert 0 < config.history_share < 1  # the JAX backend packs the live positions
    else:
        assert (config.embedding_dim, config.attention_norm) == (16, "sigmoid") and config.history_share == 1.0
        assert len(schema.attention_groups[0].pairs) == 2  # item and category histories


def twins_of(config, splits) -> Twins:
    return Twins(splits.encoders.schema(), config.replace(attention_dropout=0.0, mlp_dropout=0.0, **STEP_DECAY), DTYPE)


def test_forward_and_gradients(source):
    _, config, splits = source
    twins = twins_of(config, splits)
    rows = np.random.default_rng(0).permutation(len(splits.train["label"]))[: config.batch_size]
    batch = twins.batch(splits.train, rows)
    assert_within(twins.forward(batch, train=True) + twins.forward(batch, train=False, prefix="eval ")
                  + twins.gradients(batch))


def test_optimiser_steps(source):
    """STEPS steps of the default batch size in the loop's batch order. float64
    compares one trajectory per framework at its end; float32 takes each step
    from torch's state (weights, statistics, Adam's moments) and compares every
    step, since a PReLU input within rounding of 0 sends a free float32
    trajectory of the split attention input elsewhere (docs/parity.md)."""
    _, config, splits = source
    twins = twins_of(config, splits)
    n = len(splits.train["label"])
    batches = [rows for epoch in range(1, 100) for rows in epoch_batches(n, config.batch_size, 0, epoch)][:STEPS]
    batches = [twins.batch(splits.train, b) for b in batches]
    if X64:
        rows = twins.train_steps(batches)
        assert len(rows) == len(twins.torch.state_dict())
    else:
        rows, kinks = twins.synced_steps(batches)
        assert sum("(Adam mu)" in r.name for r in rows) == len(list(twins.torch.parameters()))
        assert len(kinks) <= STEPS // 2, kinks
    assert_within(rows)
