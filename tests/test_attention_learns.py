"""DIN's attention learns what it claims: on data with a planted signal
(tests/planted.py: the candidate is or is not one of the history's items), the
trained attention weighs the planted item most and beats the paper's pooled
BaseModel (--pooling mean), in both backends, with the shipped defaults.

The runs take as many optimiser steps as a few epochs of a real dataset
(1,200 at B = 128), where coupled weight decay on the attention units walked
them to zero (docs/model.md, "Regularisation"): with that decay
(--attention-weight-decay 0.001) the paper-sized attention puts its largest
weight on the planted item in about half the positive rows and gains about
0.010 AUC over pooling; the tutorial's shrinks to uniform weights.
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import planted
import train
from core.config import DINConfig
from data.sources.base import SEQUENTIAL_OPTIONS
from data.sources.movielens import MovieLens
from inference.model import load_run
from training.run_dir import read_history

# Raw MovieLens' sequential protocol: its source's defaults (the paper's sizes, softmax attention, masked padding).
# Raw MovieLens' model defaults (its features, which the planted data has not, aside).
SEQUENTIAL = {k: v for k, v in MovieLens().defaults(DINConfig()).items() if k not in SEQUENTIAL_OPTIONS}
PAPER_EPOCHS = 12  # 1,200 steps of 128 rows
# The tutorial's defaults (every other source): its small sigmoid attention learns slowly.
TUTORIAL_EPOCHS = 20
# What "attends" means here: the largest weight on the planted item in most
# positive rows, and test AUC a clear margin above the pooled model's.
ON_PLANTED = 0.7
MARGIN = 0.015


def flags(settings: dict) -> list[str]:
    out = []
    for name, value in settings.items():
        if isinstance(value, bool):
            out.append(f"--{'' if value else 'no-'}{name.replace('_', '-')}")
            continue
        out += [f"--{name.replace('_', '-')}", *(map(str, value) if isinstance(value, tuple) else [str(value)])]
    return out


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    frames = planted.write(str(folder), train=12800, test=4000, items=1000, max_len=50, effect=0.7)
    return str(folder), frames


def trained(data, out, backend, epochs, *extra) -> str:
    assert train.main(["--backend", backend, "--data", data, "--out", str(out), "--epochs", str(epochs),
                       "--patience", str(epochs), "--no-progress", *extra]) == 0
    return str(out)


def scored(run: str, frames) -> tuple[float, float]:
    """(test AUC, the share of positive rows whose largest attention weight is on the planted item)."""
    test = frames["test"]
    model = load_run(run)
    _, inputs = model.encode(test.drop(columns="planted"))
    logits, weights = model.forward(inputs)
    inside = test["planted"].to_numpy() >= 0
    on_planted = np.mean(weights["history"][inside].argmax(axis=1) == test["planted"].to_numpy()[inside])
    return roc_auc_score(test["label"], logits), float(on_planted)


@pytest.fixture(scope="module")
def pooled_auc(planted_data, tmp_path_factory):
    data, frames = planted_data
    run = trained(data, tmp_path_factory.mktemp("pooled") / "run", "jax", PAPER_EPOCHS, *flags(SEQUENTIAL),
                  "--pooling", "mean")
    return scored(run, frames)[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_attention_finds_the_planted_item(planted_data, pooled_auc, backend, tmp_path):
    data, frames = planted_data
    run = trained(data, tmp_path / "run", backend, PAPER_EPOCHS, *flags(SEQUENTIAL))
    auc, on_planted = scored(run, frames)
    assert on_planted > ON_PLANTED, f"largest weight on the planted item in {on_planted:.1%} of positive rows"
    assert auc > pooled_auc + MARGIN, f"DIN test AUC {auc:.4f}, pooled {pooled_auc:.4f}"
    ratios = [row["attention_ratio/history"] for row in read_history(run)]
    assert ratios[-1] > 5 * ratios[0] and ratios[-1] > 5  # it sharpens as it trains, and stays sharp


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_tutorial_attention_stays_alive(planted_data, backend, tmp_path):
    """The tutorial's sizes and sigmoid (every source but raw MovieLens) learn
    this signal too slowly to isolate the planted item in a test's time; what
    they must not do is collapse: the weights grow apart and the units' norm
    does not shrink."""
    data, _ = planted_data
    history = read_history(trained(data, tmp_path / "run", backend, TUTORIAL_EPOCHS))
    ratios = [row["attention_ratio/history"] for row in history]
    norms = [row["attention_norm/history"] for row in history]
    assert ratios[-1] > 1.3 and ratios[-1] > ratios[0] + 0.2, ratios
    assert norms[-1] > 0.9 * norms[0], norms


@pytest.mark.slow
def test_a_constant_score_fails_the_check(planted_data, monkeypatch, tmp_path):
    """The check above can fail: an attention whose scores are one constant
    (as a collapsed unit's are) weighs every position alike."""
    import jax.numpy as jnp

    from din_jax import attention as jax_attention

    def uniform(scores, real):  # what a softmax of one constant score per row gives
        return real / jnp.maximum(real.sum(axis=-1, keepdims=True), 1)

    monkeypatch.setattr(jax_attention, "masked_softmax", uniform)
    data, frames = planted_data
    _, on_planted = scored(trained(data, tmp_path / "run", "jax", PAPER_EPOCHS, *flags(SEQUENTIAL)), frames)
    assert on_planted < ON_PLANTED
