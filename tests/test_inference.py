"""Using a trained run: load_run's predict / attention / evaluate, predict.py, --explain.

Runs on the synthetic tier: a one-epoch torch run on the synthetic tutorial
split, made by train.py (tests/conftest.py: tutorial_run).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pandas as pd
import pytest

import predict
from data import metrics
from inference import load_run
from inference.model import bucket_sizes

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def test_rows(tutorial_dir) -> pd.DataFrame:
    return pd.read_csv(os.path.join(tutorial_dir, "test.csv"), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def torch_model(tutorial_run):
    return load_run(tutorial_run)


@pytest.fixture(scope="module")
def jax_model(tutorial_run):
    return load_run(tutorial_run, backend="jax")  # torch weights converted


def test_predict_reproduces_the_runs_test_metrics(torch_model, jax_model, test_rows, tutorial_run):
    reported = json.loads(pathlib.Path(tutorial_run, "metrics.json").read_text())
    labels = test_rows["label"].astype(float).to_numpy()
    for model in (torch_model, jax_model):
        p = model.predict(test_rows)
        assert p.dtype == np.float32 and p.shape == (len(test_rows),)
        assert metrics.auc(labels, p) == pytest.approx(reported["test_auc"], abs=1e-6)
        found = model.evaluate(test_rows)
        assert found["auc"] == pytest.approx(reported["test_auc"], abs=1e-6)
        assert found["logloss"] == pytest.approx(reported["test_logloss"], abs=1e-5)
    np.testing.assert_allclose(jax_model.predict(test_rows), torch_model.predict(test_rows), atol=1e-5)


def test_batches_are_padded_to_a_few_sizes(jax_model, test_rows):
    seen = []
    predictor = jax_model.predictor
    jax_model.predictor = lambda batch: seen.append(len(batch["movieId"])) or predictor(batch)
    try:
        expected = jax_model.predict(test_rows)
        jax_model.batch_size, jax_model.sizes = 64, bucket_sizes(64)
        for n in (1, 5, 9, 130, len(test_rows)):
            np.testing.assert_allclose(jax_model.predict(test_rows.head(n)), expected[:n], atol=1e-6)
    finally:
        jax_model.predictor = predictor
    assert bucket_sizes(64) == (1, 8, 64) and bucket_sizes(1024) == (1, 8, 64, 512, 1024)
    assert set(seen) <= set(bucket_sizes(jax_model.config.eval_batch_size)) | {1, 8, 64}


def test_raw_row_rules(torch_model, test_rows):
    rows = test_rows.head(4).copy()
    base = torch_model.predict(rows)
    # label and the user column are optional.
    np.testing.assert_array_equal(torch_model.predict(rows.drop(columns=["label", "userId"])), base)
    # Unknown ids all take the unknown index.
    a, b = rows.copy(), rows.copy()
    a["movieId"], b["movieId"] = "no-such-movie", "999999"
    np.testing.assert_array_equal(torch_model.predict(a), torch_model.predict(b))
    # A history as a list of ids is the joined string; an empty one is allowed.
    as_lists = rows.assign(histHighRatedMovieIds=[h.split("|") if h else [] for h in rows["histHighRatedMovieIds"]])
    np.testing.assert_array_equal(torch_model.predict(as_lists), base)
    empty = torch_model.predict(rows.assign(histHighRatedMovieIds=""))
    assert np.isfinite(empty).all()
    # Longer histories are cut to the first max_len ids, as the encoder does in training.
    max_len = torch_model.encoders.sequence["histHighRatedMovieIds"].max_len
    full = rows.assign(histHighRatedMovieIds="|".join(str(i) for i in range(1, max_len + 1)))
    longer = rows.assign(histHighRatedMovieIds=full["histHighRatedMovieIds"] + "|7|8|9")
    np.testing.assert_array_equal(torch_model.predict(longer), torch_model.predict(full))
    # An empty age is imputed with the training mean.
    mean = torch_model.encoders.numeric["age"].mean
    np.testing.assert_allclose(torch_model.predict(rows.assign(age="")), torch_model.predict(rows.assign(age=mean)),
                               atol=1e-7)


def test_attention_lists_each_real_history_position(torch_model, test_rows):
    rows = test_rows.head(6)
    frame = torch_model.attention(rows)["group1"]
    _, inputs = torch_model.encode(rows)
    weights = torch_model.forward(inputs)[1]["group1"]  # [N, T]
    max_len = torch_model.encoders.sequence["histHighRatedMovieIds"].max_len
    for i, history in enumerate(rows["histHighRatedMovieIds"]):
        ids = history.split("|")[:max_len] if history else []
        mine = frame[frame["row"] == i]
        assert mine["histHighRatedMovieIds"].tolist() == ids and mine["position"].tolist() == list(range(len(ids)))
        np.testing.assert_array_equal(mine["weight"].to_numpy(), weights[i, : len(ids)])
        assert (weights[i, len(ids):] == 0).all()  # padding weighs nothing


def test_predict_cli_on_a_csv_and_a_folder(tutorial_run, tutorial_dir, torch_model, test_rows, tmp_path, capsys):
    out = tmp_path / "p.csv"
    csv_path = os.path.join(tutorial_dir, "test.csv")
    assert predict.main([tutorial_run, "--data", csv_path, "--out", str(out), "--attention", "2", "--no-progress"]) == 0
    table = pd.read_csv(out, dtype={"attended_1": str, "attended_2": str})
    assert list(table.columns) == ["userId", "movieId", "probability", "label", "attended_1", "weight_1",
                                   "attended_2", "weight_2"]
    np.testing.assert_allclose(table["probability"], torch_model.predict(test_rows), atol=1e-7)
    first = torch_model.attention(test_rows.head(1))["group1"].sort_values("weight", ascending=False)
    if len(first) >= 2:
        assert table.loc[0, "attended_1"] == first["histHighRatedMovieIds"].iloc[0]
        assert table.loc[0, "weight_1"] == pytest.approx(first["weight"].iloc[0], abs=1e-7)
    printed = capsys.readouterr().out
    reported = json.loads(pathlib.Path(tutorial_run, "metrics.json").read_text())
    assert f"AUC {reported['test_auc']:.6f}" in printed
    # A folder: its test split through the run's protocol; the other framework agrees.
    folder_out = tmp_path / "folder.csv"
    assert predict.main([tutorial_run, "--data", tutorial_dir, "--out", str(folder_out), "--backend", "jax",
                         "--no-progress"]) == 0
    np.testing.assert_allclose(pd.read_csv(folder_out)["probability"], table["probability"], atol=1e-5)
    assert f"AUC {reported['test_auc']:.5f}" in capsys.readouterr().out


def test_explain_draws_a_users_attention(tutorial_run, tutorial_dir, test_rows, tmp_path):
    user = test_rows["userId"].iloc[0]
    out = tmp_path / "user.png"
    assert predict.main([tutorial_run, "--data", tutorial_dir, "--explain", user, "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 10_000


def unfinished(tutorial_run, tmp):
    run = tmp / "unfinished"
    shutil.copytree(tutorial_run, run)
    (run / "metrics.json").unlink()
    return str(run)


def csv_with(test_rows, tmp, edit):
    path = tmp / "rows.csv"
    edit(test_rows.head(5).copy()).to_csv(path, index=False)
    return str(path)


BAD = {
    "not a run": (lambda run, rows, tmp: ["--data", str(tmp)], lambda run, tmp: str(tmp), "missing; is"),
    "unfinished run": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f)], unfinished,
                       "did not finish"),
    "missing column": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.drop(columns=["genres"]))],
                       None, "missing column(s) ['genres']; rows need ['age', 'gender'"),
    "not a number": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(age=["30", "x", "", "1", "2"]))],
                     None, "rows.csv, line 3, column 'age': not a number (value 'x')"),
    "bad label": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(label=["1", "0", "2", "1", "1"]))],
                  None, "line 4, column 'label': label must be 0 or 1"),
    "unknown user": (lambda run, rows, tmp: ["--data", "TUTORIAL", "--explain", "no-such-user"], None,
                     "--explain no-such-user: no such user in"),
    "output exists": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f), "--out", str(run)], None,
                      "exists; choose a new path or pass --overwrite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(case, tutorial_run, tutorial_dir, test_rows, tmp_path, capsys):
    flags, run_of, expected = BAD[case]
    run = run_of(tutorial_run, tmp_path) if run_of else tutorial_run
    argv = [run, *(tutorial_dir if f == "TUTORIAL" else f for f in flags(run, test_rows, tmp_path))]
    assert predict.main(argv + ["--out", str(tmp_path / "out.csv")] * ("--out" not in argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out.csv").exists()


def test_a_run_loads_without_its_training_data(tutorial_run, test_rows, tmp_path):
    # A --mba-reg run's training backend needs the training split (id counts);
    # inference holds eval-mode variables only and needs neither it nor the data folder.
    run = tmp_path / "mba"
    shutil.copytree(tutorial_run, run)
    config = json.loads((run / "config.json").read_text())
    config["optimizer"]["mba_reg"] = 0.01
    (run / "config.json").write_text(json.dumps(config))
    np.testing.assert_array_equal(load_run(str(run)).predict(test_rows), load_run(tutorial_run).predict(test_rows))
