"""The learning-rate schedule: one formula (core/schedule.py), optax's
schedules in JAX equal to it step by step, torch's LambdaLR stepping it, the
decay spanning the whole run, and a resumed torch run continuing it."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import DINConfig
from data.batches import epoch_batches
from core import schedule


@pytest.mark.parametrize("kind, warmup", [("constant", 4), ("cosine", 0), ("cosine", 5), ("linear", 3)])
def test_jax_schedule_is_the_formula_and_torch_steps_it(kind, warmup):
    import torch

    from din_jax.steps import learning_rate
    from din_torch.steps import make_schedule

    config = DINConfig(lr_schedule=kind, warmup_steps=warmup, decay_steps=0 if kind == "constant" else 10,
                       learning_rate=0.01)
    factor = schedule.factor(config)
    expected = [0.01 * factor(step) for step in range(20)]
    assert expected[0] == (0.0 if warmup else 0.01) and max(expected) == pytest.approx(0.01)
    if kind != "constant":
        assert expected[warmup + 10] == pytest.approx(0.0, abs=1e-12) and expected[-1] == expected[warmup + 10]
    jax_rate = learning_rate(config)
    np.testing.assert_allclose([float(jax_rate(step)) for step in range(20)], expected, rtol=1e-6, atol=1e-9)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    rate = make_schedule(optimizer, config)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        rate.step()
    np.testing.assert_allclose(seen, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n, batch", [(100, 10), (101, 10), (102, 10), (7, 2)])
def test_the_decay_spans_every_step_of_the_run(n, batch):
    assert schedule.steps_per_epoch(n, batch) == len(epoch_batches(n, batch, 0, 1))
    config = schedule.resolve(DINConfig(lr_schedule="cosine", warmup_steps=3, epochs=4, batch_size=batch), n)
    assert config.decay_steps + 3 == 4 * len(epoch_batches(n, batch, 0, 1))
    assert schedule.resolve(DINConfig(), n) == DINConfig()  # constant: nothing to resolve


def test_a_resumed_torch_run_continues_the_schedule(tutorial_splits, tmp_path):
    from din_torch.backend import TorchBackend
    from training.backend import make_backend

    config = DINConfig(lr_schedule="linear", warmup_steps=2, epochs=2, batch_size=256)
    backend = make_backend("torch", tutorial_splits.encoders.schema(), config, tutorial_splits.train)
    total = 2 * schedule.steps_per_epoch(len(tutorial_splits.train["label"]), 256)
    assert backend.schedule.lr_lambdas[0](total) == 0.0  # resolved: the decay ends with the run
    backend.train_batches(tutorial_splits.train, epoch_batches(len(tutorial_splits.train["label"]), 256, 0, 1)[:5],
                          lambda n: None)
    rate = backend.optimizer.param_groups[0]["lr"]
    backend.save_state(str(tmp_path / "state"))
    again = make_backend("torch", tutorial_splits.encoders.schema(), config, tutorial_splits.train)
    assert isinstance(again, TorchBackend) and again.optimizer.param_groups[0]["lr"] == 0.0  # step 0 of the warm-up
    again.load_state(str(tmp_path / "state"))
    assert again.optimizer.param_groups[0]["lr"] == rate > 0
