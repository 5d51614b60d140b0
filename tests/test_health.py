"""The attention's health (training/health.py): the ratio, the collapse rule,
and the loop's columns and warning."""

import logging

import numpy as np
import pytest

from core.config import DINConfig
from training import fit, health, make_backend


def test_the_ratio_is_one_when_uniform_and_the_length_when_one_hot():
    length = np.array([4, 2, 1, 3])
    uniform = np.array([[0.25] * 4 + [0], [0.5, 0.5, 0, 0, 0], [1, 0, 0, 0, 0], [1 / 3] * 3 + [0, 0]])
    assert health.weight_ratio(uniform, length) == pytest.approx(1.0)  # the row of length 1 is left out
    one_hot = np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0.9]])  # padding ignored
    assert health.weight_ratio(one_hot, length) == pytest.approx(np.mean([4, 2, 3]))
    sigmoid = np.array([[0.6, 0.2, 0.2, 0.2]])  # sigmoid weights need not sum to 1
    assert health.weight_ratio(sigmoid, np.array([4])) == pytest.approx(0.6 / 0.3)
    assert np.isnan(health.weight_ratio(np.ones((2, 3)), np.array([1, 0])))


def test_collapse_is_a_uniform_attention_or_a_vanished_unit():
    row = {"attention_ratio/liked": 1.0 + 1e-8, "attention_norm/liked": 2.0,
           "attention_ratio/disliked": 3.0, "attention_norm/disliked": 1e-30,
           "attention_ratio/alive": 1.5, "attention_norm/alive": 0.5}
    assert health.collapsed(row) == ["liked", "disliked"]


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_the_loop_records_health_and_warns_once_of_a_collapse(backend_name, tutorial_splits, tmp_path, caplog,
                                                             monkeypatch):
    config = DINConfig(epochs=3)
    backend = make_backend(backend_name, tutorial_splits.encoders.schema(), config)
    norms = backend.attention_norms()
    assert set(norms) == {"liked"} and norms["liked"] > 1  # the live unit's kernels
    monkeypatch.setattr(backend, "attention_norms", lambda: {"liked": 1e-34})  # as a decayed unit's
    with caplog.at_level(logging.WARNING, logger="din"):
        result = fit(backend, tutorial_splits, config, str(tmp_path), progress=False)
    history = np.genfromtxt(tmp_path / "history.csv", delimiter=",", names=True)
    assert len(history) == 3 and (history["attention_ratioliked"] > 1.0).all()  # genfromtxt drops the '/'
    assert (history["epoch_seconds"] > 0).all() and (history["samples_per_s"] > 0).all()
    assert result["attention_ratio/liked"] == history["attention_ratioliked"][result["best_epoch"] - 1]
    warnings = [r for r in caplog.records if "has collapsed" in r.getMessage()]
    assert len(warnings) == 1 and "--attention-weight-decay" in warnings[0].getMessage()


def test_a_pooled_model_has_no_attention_to_measure(tutorial_splits, tmp_path):
    config = DINConfig(epochs=1, pooling="mean")
    backend = make_backend("torch", tutorial_splits.encoders.schema(), config)
    assert backend.attention({}) == {} and backend.attention_norms() == {}
    fit(backend, tutorial_splits, config, str(tmp_path), progress=False)
    assert "attention_ratio" not in (tmp_path / "history.csv").read_text()
