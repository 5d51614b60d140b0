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
from inference import load_run
from inference.model import bucket_sizes
from training import metrics

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = pathlib.Path(__file__).resolve().parents[1]


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
    assert seen and set(seen) <= set(bucket_sizes(jax_model.config.eval_batch_size)) | {1, 8, 64}


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
    # Longer histories keep their latest max_len ids (the end of the oldest-first list), as in training.
    max_len = torch_model.encoders.sequence["histHighRatedMovieIds"].max_len
    full = rows.assign(histHighRatedMovieIds="|".join(str(i) for i in range(1, max_len + 1)))
    longer = rows.assign(histHighRatedMovieIds="7|8|9|" + full["histHighRatedMovieIds"])
    np.testing.assert_array_equal(torch_model.predict(longer), torch_model.predict(full))
    # An empty age is imputed with the training mean.
    mean = torch_model.encoders.numeric["age"].mean
    np.testing.assert_allclose(torch_model.predict(rows.assign(age="")), torch_model.predict(rows.assign(age=mean)),
                               atol=1e-7)


def test_attention_lists_each_real_history_position(torch_model, test_rows):
    rows = test_rows.head(6)
    frame = torch_model.attention(rows)["liked"]
    _, inputs = torch_model.encode(rows)
    weights = torch_model.forward(inputs)[1]["liked"]  # [N, T]
    max_len = torch_model.encoders.sequence["histHighRatedMovieIds"].max_len
    for i, history in enumerate(rows["histHighRatedMovieIds"]):
        ids = history.split("|")[-max_len:] if history else []
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
    row = int(np.flatnonzero(test_rows["histHighRatedMovieIds"].str.count("\\|") >= 1)[0])  # two ids or more
    first = torch_model.attention(test_rows.iloc[row : row + 1])["liked"].sort_values("weight", ascending=False)
    assert len(first) >= 2
    assert table.loc[row, "attended_1"] == first["histHighRatedMovieIds"].iloc[0]
    assert table.loc[row, "weight_1"] == pytest.approx(first["weight"].iloc[0], abs=1e-7)
    assert table.loc[row, "attended_2"] == first["histHighRatedMovieIds"].iloc[1]
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


def write_semicolons(test_rows, tmp):
    path = tmp / "rows.csv"
    test_rows.head(5).to_csv(path, index=False, sep=";")
    return path


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
    "output exists": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f), "--out",
                                               os.path.join(run, "metrics.json")], None,
                      "exists; choose a new path or pass --overwrite"),
    "output is a folder": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f), "--out", str(run)], None,
                           "is a folder, expected a file path"),
    "a history written as a list": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(
        histHighRatedMovieIds=["", "", "[260, 1196]", "", ""]))], None,
        "rows.csv, line 4, column 'histHighRatedMovieIds': a list written as '[260, 1196]'; write its ids joined by '|'"),
    "a fractional id": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(
        movieId=["1", "2571.5", "3", "4", "5"]))], None,
        "rows.csv, line 3, column 'movieId': an id must be an integer or a string, got the fractional number '2571.5'"),
    "a fractional id in a history": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(
        histHighRatedMovieIds=["", "1|2.5", "", "", ""]))], None,
        "line 3, column 'histHighRatedMovieIds': an id must be an integer or a string, got the fractional number '2.5'"),
    "a history joined by commas": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.assign(
        histHighRatedMovieIds=["", "", "260,1196,1210", "", ""]))], None,
        "line 4, column 'histHighRatedMovieIds': the ids in '260,1196,1210' are joined by ','; this column's separator "
        "is '|'"),
    "a semicolon-separated file": (lambda run, rows, tmp: ["--data", str(write_semicolons(rows, tmp))], None,
                                   "is one field: the file looks ';'-separated; save it with commas"),
    "a column named twice": (lambda run, rows, tmp: ["--data", csv_with(rows, tmp, lambda f: f.set_axis(
        [c if c != "label" else "movieId" for c in f.columns], axis=1))], None,
        "rows.csv, line 1: the header names column 'movieId' twice"),
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


def test_histories_keep_their_most_recent_ids(torch_model, test_rows):
    """Fifty unknown old ids before a few liked ones: the liked ones are what a
    history of max_len keeps, in scoring as the builders and encoders keep them."""
    max_len = torch_model.encoders.sequence["histHighRatedMovieIds"].max_len
    rows = test_rows[test_rows["histHighRatedMovieIds"] != ""].head(8)
    old = "|".join(f"old-{i}" for i in range(50))
    long = rows.assign(histHighRatedMovieIds=old + "|" + rows["histHighRatedMovieIds"])
    ids = long["histHighRatedMovieIds"].str.split("|")
    latest = rows.assign(histHighRatedMovieIds=ids.map(lambda h: "|".join(h[-max_len:])))
    oldest = rows.assign(histHighRatedMovieIds=ids.map(lambda h: "|".join(h[:max_len])))
    np.testing.assert_array_equal(torch_model.predict(long), torch_model.predict(latest))
    assert not np.array_equal(torch_model.predict(long), torch_model.predict(oldest))
    frame = torch_model.attention(long)["liked"]  # the attention lists the kept ids at their slots
    assert frame[frame["row"] == 0]["histHighRatedMovieIds"].tolist() == ids.iloc[0][-max_len:]


def test_ids_written_in_other_forms_read_as_training_read_them(torch_model, test_rows):
    rows = test_rows.head(6).copy()
    base = torch_model.predict(rows)
    spaced = rows.assign(movieId=rows["movieId"] + ".0",
                         histHighRatedMovieIds=" " + rows["histHighRatedMovieIds"].str.replace("|", " | ") + " ")
    np.testing.assert_array_equal(torch_model.predict(spaced), base)
    as_floats = {name: rows[name].to_numpy() for name in rows.columns}
    as_floats["movieId"] = rows["movieId"].astype(float).to_numpy()
    as_floats["histHighRatedMovieIds"] = np.array(
        [[float(i) for i in h.split("|")] if h else [] for h in rows["histHighRatedMovieIds"]] + [[]], dtype=object)[:-1]
    np.testing.assert_array_equal(torch_model.predict(as_floats), base)
    from core.errors import DataError

    with pytest.raises(DataError, match=r"row 1, column 'movieId': an id must be an integer or a string, got 2.5"):
        torch_model.predict({**as_floats, "movieId": np.array([1.0, 2.5, 3, 4, 5, 6])})
    with pytest.raises(DataError, match="column 'movieId' appears twice"):
        torch_model.predict(pd.concat([rows, rows[["movieId"]]], axis=1))


def test_unknown_ids_are_counted_and_reported(tutorial_run, torch_model, test_rows, tmp_path, capsys):
    rows = test_rows.head(6).assign(movieId="no-such-movie", histHighRatedMovieIds="x|y|z")
    found = torch_model.evaluate(rows)["unknown_ids"]
    assert found["movieId"] == (6, 6) and found["histHighRatedMovieIds"] == (18, 18)
    known = torch_model.evaluate(test_rows)["unknown_ids"]
    _, inputs = torch_model.encode(test_rows)
    vocabulary = torch_model.encoders.categorical["movieId"].vocabulary
    assert known["movieId"] == (int((inputs["movieId"] == vocabulary.unknown).sum()), len(test_rows))
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    assert predict.main([tutorial_run, "--data", str(path), "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ids unknown to the run" in printed and "movieId 6 of 6 (100.0%)" in printed
    assert "histHighRatedMovieIds 18 of 18 (100.0%)" in printed
    assert "GAUC n/a (every user has one row" in printed  # the tutorial split: one row per user


def test_explain_skips_samples_without_history(tutorial_run, tutorial_dir, test_rows, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(tutorial_dir, folder)
    user = test_rows["userId"].iloc[0]
    for name in ("train.csv", "test.csv"):  # the user's every sample loses its history
        frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        frame.loc[frame["userId"] == user, "histHighRatedMovieIds"] = ""
        frame.to_csv(folder / name, index=False)
    assert predict.main([tutorial_run, "--data", str(folder), "--explain", user, "--out", str(tmp_path / "u.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --explain {user}: every sample of this user has an empty history") and err.count("\n") == 1


def test_explain_picture_shows_the_differences():
    from core.config import DINConfig
    from inference.explain import label_names, weight_axis

    left, right = weight_axis(np.array([0.43, 0.47, 0.50]))  # clustered: the axis starts near them, not at 0
    assert 0.39 < left < 0.43 and 0.50 < right < 0.53
    assert weight_axis(np.array([0.01, 0.2, 0.9]))[0] == 0.0  # spread out: from 0
    clicks = DINConfig(dataset=str(ROOT / "examples" / "taobao-ad.toml"))
    assert label_names(str(ROOT / "examples"), clicks) == ("clicked", "not clicked")  # click data is not MovieLens


def test_a_run_loads_without_its_training_data(tutorial_run, test_rows, tmp_path):
    # A --mba-reg run's training backend needs the training split (id counts);
    # inference holds eval-mode variables only and needs neither it nor the data folder.
    run = tmp_path / "mba"
    shutil.copytree(tutorial_run, run)
    config = json.loads((run / "config.json").read_text())
    config["optimizer"]["mba_reg"] = 0.01
    (run / "config.json").write_text(json.dumps(config))
    np.testing.assert_array_equal(load_run(str(run)).predict(test_rows), load_run(tutorial_run).predict(test_rows))


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_run_with_the_old_attention_group_names_scores_as_it_did(tutorial_run, torch_model, test_rows, tmp_path,
                                                                   backend):
    """Runs written before the attention groups took the data's names call
    the tutorial's group `group1` in encoders.json and in their weights' names:
    they load and score as before, in either framework (the names come from
    the run's own encoders.json)."""
    from training.run_dir import read_weights, write_weights

    old = tmp_path / "old-run"
    shutil.copytree(tutorial_run, old)
    encoders = (old / "encoders.json").read_text()
    assert '"liked"' in encoders
    (old / "encoders.json").write_text(encoders.replace('"liked"', '"group1"'))
    weights, trained_by = read_weights(str(old / "model.safetensors"))
    renamed = {name.replace("attention.liked.", "attention.group1."): value for name, value in weights.items()}
    assert renamed.keys() != weights.keys()
    write_weights(str(old / "model.safetensors"), renamed, trained_by)
    model = load_run(str(old), backend)
    assert [g.name for g in model.schema.attention_groups] == ["group1"]
    np.testing.assert_allclose(model.predict(test_rows), torch_model.predict(test_rows), rtol=1e-5, atol=1e-6)


def test_explain_draws_every_attention_group(ml1m_dir, tmp_path):
    """Raw MovieLens' run attends over the liked and the disliked history: the
    picture has a row of panels for each, and the weights name their group."""
    from matplotlib.image import imread

    from conftest import train_run
    from inference.explain import draw, explain

    run = train_run(ml1m_dir, tmp_path / "run", "--max-hist", "6")
    model = load_run(run)
    assert [g.name for g in model.schema.attention_groups] == ["liked", "disliked"]
    out = tmp_path / "user.png"
    frame = explain(model, ml1m_dir, "7", str(out))
    assert set(frame["group"]) == {"liked", "disliked"}
    for group, mine in frame.groupby("group"):  # each candidate's weights over each history
        assert mine["row"].nunique() >= 2 and np.isfinite(mine["weight"]).all(), group
    one_group = tmp_path / "one.png"  # the same picture with the liked row only
    liked = frame[frame["group"] == "liked"].drop(columns="group")
    draw({"liked": liked}, ["a", "b", "c"][: liked["row"].nunique()], ["x", "y", "z"][: liked["row"].nunique()],
         np.full(3, 0.5), "7", str(one_group))
    assert imread(out).shape[0] > imread(one_group).shape[0]  # a second row of panels


def test_a_csv_is_scored_a_chunk_at_a_time_as_whole(tutorial_run, tutorial_dir, tmp_path, capsys, monkeypatch):
    """predict.py reads a CSV a chunk of rows at a time (memory bounded by the
    chunk): the same file, metrics and unknown-id counts as one chunk, and an
    error in a later chunk names its own line."""
    rows = os.path.join(tutorial_dir, "test.csv")
    whole, chunked = tmp_path / "whole.csv", tmp_path / "chunked.csv"
    # Chunks of whole batches (as 65,536 rows are of the default batch): the same batches, the same bits.
    flags = ["--attention", "2", "--batch-size", "8", "--no-progress"]
    assert predict.main([tutorial_run, "--data", rows, "--out", str(whole), *flags]) == 0
    one = capsys.readouterr().out
    monkeypatch.setattr(predict, "CHUNK_ROWS", 24)
    assert predict.main([tutorial_run, "--data", rows, "--out", str(chunked), *flags]) == 0
    many = capsys.readouterr().out
    assert chunked.read_bytes() == whole.read_bytes()
    assert many.replace(str(chunked), str(whole)) == one  # the counts and the AUC line
    lines = pathlib.Path(rows).read_text().splitlines()
    lines[40] = lines[40].replace(",", ";", 1)  # one field fewer on line 41
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    assert predict.main([tutorial_run, "--data", str(bad), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "bad.csv, line 41: " in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    raw = pathlib.Path(rows).read_bytes().split(b"\n")
    raw[60] = raw[60].replace(b",", b",\xff", 1)  # line 61, chunks after the first: its own number, not the reader's
    bad.write_bytes(b"\n".join(raw))
    assert predict.main([tutorial_run, "--data", str(bad), "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "bad.csv, line 61: not valid UTF-8" in capsys.readouterr().err


def test_movielens_own_no_genres_marker_scores_as_no_genres(torch_model, test_rows):
    """'(no genres listed)', the GroupLens releases' marker, reads as training
    reads it (no genres), not as a list in brackets nor an unknown genre."""
    rows = test_rows.head(4)
    marked, empty = rows.assign(genres="(no genres listed)"), rows.assign(genres="")
    np.testing.assert_array_equal(torch_model.predict(marked), torch_model.predict(empty))
    assert torch_model.evaluate(marked.assign(label=1).iloc[:2].pipe(lambda f: pd.concat([f, f.assign(label=0)])))[
        "unknown_ids"]["genres"][0] == 0
