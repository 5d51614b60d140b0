"""End-to-end: the shared loop on synthetic data in the tutorial's layout, both backends, and the CLI."""

import json
import os
import pathlib

import numpy as np
import pytest

import train
from conftest import OPTIMISED_SETTINGS
from core.config import DINConfig
from training import fit, make_backend
from training.run_dir import read_run

RUN_FILES = {"config.json", "encoders.json", "model.safetensors", "optimizer.safetensors", "history.csv", "history.png",
             "metrics.json"}
PNG = b"\x89PNG\r\n\x1a\n"
METRIC_KEYS = {"backend", "best_epoch", "valid_auc", "valid_gauc", "test_auc", "test_logloss", "test_gauc",
               "train_samples_per_s"}


def one_hot_baseline(splits) -> float:
    """Test AUC of logistic regression on the one-hot categorical ids (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    from training.metrics import auc

    columns = list(splits.encoders.categorical)
    ids = lambda split: np.stack([split[c] for c in columns], axis=1)  # noqa: E731
    encoder = OneHotEncoder(handle_unknown="ignore").fit(ids(splits.train))
    model = LogisticRegression(max_iter=1000).fit(encoder.transform(ids(splits.train)), splits.train["label"])
    return auc(splits.test["label"], model.decision_function(encoder.transform(ids(splits.test))))


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_training_learns(backend_name, tutorial_splits, tmp_path):
    # Six epochs: the tutorial's N(0, 1) embeddings and biases start far from
    # the signal, and the validation AUC climbs from about 0.55 to 0.68-0.69
    # (test AUC 0.59-0.62; logistic regression on one-hot ids: 0.52).
    config = DINConfig(epochs=6)
    backend = make_backend(backend_name, tutorial_splits.encoders.schema(), config)
    result = fit(backend, tutorial_splits, config, str(tmp_path), progress=False)
    assert set(os.listdir(tmp_path)) == RUN_FILES  # no temporary file left behind
    assert METRIC_KEYS <= set(result) and result["backend"] == backend_name
    history = np.genfromtxt(tmp_path / "history.csv", delimiter=",", names=True)
    assert history["train_loss"][1] < history["train_loss"][0]
    assert history["train_loss"][-1] < history["train_loss"][0]
    # GAUC beside AUC every epoch: the best epoch's row is the kept weights' validation score.
    best = result["best_epoch"] - 1
    for key in ("valid_auc", "valid_gauc"):  # GAUC: NaN here (each validation user has one row), in both
        np.testing.assert_allclose(history[key][best], result[key], rtol=0, atol=1e-12, err_msg=key)
    assert result["valid_auc"] > 0.66 and result["test_auc"] > 0.57
    assert result["test_auc"] > one_hot_baseline(tutorial_splits) + 0.04
    # The saved weights are the best epoch's and reproduce the reported test AUC.
    config_again, encoders, weights, written_by = read_run(str(tmp_path))
    assert config_again == config and written_by == backend_name
    fresh = make_backend(backend_name, encoders.schema(), config)
    fresh.load_weights(weights)
    from training.metrics import auc

    logits = fresh.predict(tutorial_splits.test, 256)
    assert auc(tutorial_splits.test["label"], logits) == pytest.approx(result["test_auc"], abs=1e-9)


def test_cli_on_the_real_seed_split(seed_run):
    out = pathlib.Path(seed_run)  # made by train.py's CLI (tests/conftest.py)
    assert (out / "history.png").read_bytes().startswith(PNG)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["backend"] == "torch" and config["loop"]["batch_size"] == 256 and config["loop"]["seed"] == 3


def test_cli_reports_bad_data_by_file_and_line(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("userId,label\n1,1\n")
    (tmp_path / "test.csv").write_text("userId,label\n1,1\n")
    code = train.main(["--backend", "torch", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "train.csv: missing column(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_interrupted_write_leaves_the_old_file(tmp_path):
    from training import run_dir

    path = tmp_path / "metrics.json"
    run_dir.write_json(str(path), {"a": 1})

    class Boom(Exception):
        pass

    def failing_write(tmp):
        with open(tmp, "w") as f:
            f.write('{"a": ')
        raise Boom

    with pytest.raises(Boom):
        run_dir._atomic(str(path), failing_write)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


@pytest.mark.optimised  # bit for bit across two programs: at -O1, in tests/test_optimised.py
def test_streamed_input_trains_exactly_as_device_resident(ml1m_dir, tmp_path):
    """From a built cache entry (memory-mapped .npy files), JAX's streamed input
    (host gather, a block ahead) gives bit for bit the losses, weights and
    predictions of the device-resident input; torch trains from the same arrays."""
    from data.batches import epoch_batches
    from data.datasets import load_splits

    config = DINConfig(**OPTIMISED_SETTINGS)
    splits = load_splits(ml1m_dir, config, str(tmp_path / "cache"))
    assert isinstance(splits.train["label"], np.memmap)
    batches = epoch_batches(len(splits.train["label"]), config.batch_size, config.seed, 1)[:10]  # 3 blocks and a third
    results = {}
    for mode in ("device", "stream"):
        backend = make_backend("jax", splits.encoders.schema(), config.replace(input=mode))
        losses = backend.train_batches(splits.train, batches, lambda n: None)
        results[mode] = losses, backend.weights(), backend.predict(splits.valid, config.eval_batch_size), backend.input_path
    (losses, weights, logits, path), (s_losses, s_weights, s_logits, s_path) = results["device"], results["stream"]
    assert (path, s_path) == ("device-resident", "streamed") and len(losses) == 10
    np.testing.assert_array_equal(s_losses, losses)
    np.testing.assert_array_equal(s_logits, logits)
    for name, value in weights.items():
        np.testing.assert_array_equal(s_weights[name], value, err_msg=name)
    torch_losses = make_backend("torch", splits.encoders.schema(), config).train_batches(splits.train, batches, lambda n: None)
    assert np.isfinite(torch_losses).all() and len(torch_losses) == 10


def test_each_epoch_bar_ends_at_100_percent(tutorial_dir, tmp_path, capsys):
    assert train.main(["--backend", "torch", "--data", tutorial_dir, "--out", str(tmp_path / "run"), "--epochs", "2",
                       "--batch-size", "256"]) == 0
    bars = capsys.readouterr().err.replace("\r", "\n")
    for epoch in (1, 2):  # the last drawn state of each epoch's bar stays: 100% and the epoch's rate
        states = [line for line in bars.splitlines() if line.startswith(f"epoch {epoch}:")]
        assert states and "100%" in states[-1], states[-3:]


def test_the_epoch_log_says_n_a_where_gauc_is_undefined(tutorial_dir, tmp_path, caplog):
    """The tutorial's split holds one sample per user: no GAUC, and the
    per-epoch line says so as the summary does (n/a, not nan)."""
    from conftest import train_run

    with caplog.at_level("INFO", logger="din"):
        train_run(tutorial_dir, tmp_path / "run")
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1:")]
    assert epochs and "valid_gauc n/a" in epochs[0] and "nan" not in epochs[0], epochs
