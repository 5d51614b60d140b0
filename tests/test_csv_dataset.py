"""Any CSV described by a dataset file: the tutorial's layout through one, the Taobao sample, bad files."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pandas as pd
import pytest

import train
from conftest import sample_dir
from core.config import DINConfig
from core.errors import DataError
from data.datasets import detect, load_splits
from data.features import features
from data.statistics import fit_encoders
from data.schema import LABEL, TIME, USER, AttentionGroup
from data.splits import encode, holdout_users

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tutorial_reference(folder: str, config: DINConfig):
    """The tutorial's split read and encoded the way the project did before dataset files:
    its features spelled out, pandas for the CSVs."""
    def read(name):
        frame = pd.read_csv(os.path.join(folder, name), dtype=str, keep_default_na=False)
        columns = {c: frame[c].str.strip().to_numpy().astype(str) for c in
                   ("gender", "movieId", "occupation", "zipCode", "genres", "histHighRatedMovieIds", "negHistMovieIds")}
        columns["age"] = pd.to_numeric(frame["age"].replace("", np.nan)).to_numpy(np.float64)
        columns[LABEL] = frame["label"].astype(float).to_numpy(np.float32)
        columns[USER] = frame["userId"].astype(np.int64).to_numpy()
        columns[TIME] = frame["timestamp"].astype(np.int64).to_numpy()  # the layout's time column
        return columns

    train_rows, test = read("train.csv"), read("test.csv")
    held = holdout_users(train_rows[USER], config.valid_fraction, config.seed)
    fit = {k: v[~held] for k, v in train_rows.items()}
    valid = {k: v[held] for k, v in train_rows.items()}
    encoders = fit_encoders(
        fit, features(["age"], ["gender", "movieId", "occupation", "zipCode"],
                      ["genres", "histHighRatedMovieIds", "negHistMovieIds"]),
        [AttentionGroup("liked", (("movieId", "histHighRatedMovieIds"),))], config.min_count, config.share_embeddings,
        config.max_len,
    )
    return [encode(part, encoders) for part in (fit, valid, test)], encoders


@pytest.mark.parametrize("options", [{}, {"share_embeddings": True, "max_len": 4, "min_count": 2}])
def test_the_tutorial_layout_is_a_dataset_file(tutorial_dir, options):
    config = DINConfig(**options)
    assert detect(tutorial_dir, config).name == "tutorial"
    splits = load_splits(tutorial_dir, config)
    expected, encoders = tutorial_reference(tutorial_dir, config)
    assert splits.encoders.to_json() == encoders.to_json()
    for found, wanted in zip((splits.train, splits.valid, splits.test), expected):
        assert found.keys() == wanted.keys()
        for name in wanted:
            assert found[name].dtype == wanted[name].dtype and np.array_equal(found[name], wanted[name]), name


def test_a_folder_with_its_own_dataset_file(tutorial_dir, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(tutorial_dir, folder)
    (folder / "train.csv").rename(folder / "fit.csv")
    layout = (ROOT / "data" / "sources" / "layouts" / "tutorial.toml").read_text().replace('"train.csv"', '"fit.csv"')
    (folder / "dataset.toml").write_text(layout.replace('age = { kind = "numeric" }',
                                                        'age = { kind = "numeric", preprocess = "standard" }'))
    splits = load_splits(str(folder), DINConfig())
    assert detect(str(folder), DINConfig()).name == "dataset file"
    ages = splits.train["age"]
    assert abs(float(ages.mean())) < 0.05 and abs(float(ages.std()) - 1) < 0.05  # z-scored, not quantiles
    assert len(splits.test[LABEL]) == len(pd.read_csv(folder / "test.csv"))


@pytest.mark.slow
def test_taobao_sample_trains_on_both_backends_and_passes_parity(tmp_path, capsys):
    data = sample_dir("taobao-ad-sample")
    runs = {}
    for backend in ("torch", "jax"):
        runs[backend] = tmp_path / backend
        assert train.main(["--backend", backend, "--data", data, "--dataset", str(ROOT / "examples" / "taobao-ad.toml"),
                           "--epochs", "2", "--batch-size", "32", "--out", str(runs[backend]), "--no-progress"]) == 0
    config = DINConfig.from_json((runs["jax"] / "config.json").read_text())
    assert config.dataset == str(ROOT / "examples" / "taobao-ad.toml")
    from parity.__main__ import main as parity  # python -m parity, in this float32 process

    assert parity([str(runs["jax"]), "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "all outputs within tolerance" in out and "eval attention_weights/clicks" in out, out
    # The run scores its own CSV rows: the dataset file's label (clk) and user (userid) columns are known.
    from inference import load_run

    rows = pd.read_csv(os.path.join(data, "test.csv"), dtype=str, keep_default_na=False)
    found = load_run(str(runs["jax"])).evaluate(rows)
    reported = json.loads((runs["jax"] / "metrics.json").read_text())
    assert found["auc"] == pytest.approx(reported["test_auc"], abs=1e-6)
    assert found["gauc"] == pytest.approx(reported["test_gauc"], abs=1e-6)
    # predict.py prints the same metrics for the data folder as for its test CSV (the label named 'clk' either way).
    import predict

    printed = []
    for source in (data, os.path.join(data, "test.csv")):
        assert predict.main([str(runs["jax"]), "--data", source, "--out", str(tmp_path / f"p{len(printed)}.csv"),
                             "--no-progress"]) == 0
        printed.append(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed[0] == printed[1] and printed[0].startswith("AUC "), printed


def bad_file(tmp_path, tutorial_dir, edit) -> str:
    text = edit((ROOT / "data" / "sources" / "layouts" / "tutorial.toml").read_text())
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


BAD = {
    "unknown kind": (lambda t: t.replace('gender = { kind = "categorical" }', 'gender = { kind = "category" }'),
                     "bad.toml, key 'features.gender.kind': 'category' is not a kind; use one of"),
    "column missing": (lambda t: t.replace("[attention]", 'mood = { kind = "numeric" }\n\n[attention]'),
                       "train.csv: missing column(s) ['mood']"),
    "user column missing": (lambda t: t.replace('user = "userId"', 'user = "uid"'),
                            "(training needs the user column 'uid' that bad.toml names, for the validation "
                            "hold-out and GAUC; scoring does not; remove `user` from the dataset file if the data"),
    "history not a sequence": (lambda t: t.replace('[["movieId", "histHighRatedMovieIds"]]', '[["movieId", "gender"]]'),
                               "bad.toml, key 'attention.liked': history 'gender' is not a sequence feature"),
    "share cycle": (lambda t: t.replace('genres = { kind = "sequence" }', 'genres = { kind = "sequence", share = "negHistMovieIds" }')
                    .replace('negHistMovieIds = { kind = "sequence" }', 'negHistMovieIds = { kind = "sequence", share = "genres" }'),
                    "bad.toml, key 'features.genres.share': the shares form a cycle (genres -> negHistMovieIds -> genres)"),
    "not toml": (lambda t: t + "\n[files\n", "bad.toml: not valid TOML"),
    "unknown option": (lambda t: t.replace('age = { kind = "numeric" }', 'age = { kind = "numeric", scale = 2 }'),
                       "key 'features.age.scale': unknown option"),
    "no features": (lambda t: t.split("[features]")[0] + "[features]\n",
                    "bad.toml, key 'features': lists no feature; add one line per input column"),
    "unknown order": (lambda t: t.replace('genres = { kind = "sequence" }', 'genres = { kind = "sequence", order = "newest" }'),
                      "key 'features.genres.order': a sequence's order is one of ('oldest-first', 'latest-first')"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_dataset_files_are_one_line(case, tutorial_dir, tmp_path, capsys):
    edit, expected = BAD[case]
    path = bad_file(tmp_path, tutorial_dir, edit)
    code = train.main(["--backend", "torch", "--data", tutorial_dir, "--dataset", path, "--out", str(tmp_path / "run"),
                       "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_a_dataset_without_attention_trains_and_says_so(tutorial_dir, tmp_path, caplog):
    path = bad_file(tmp_path, tutorial_dir, lambda t: t.split("[attention]")[0])
    assert train.main(["--backend", "torch", "--data", tutorial_dir, "--dataset", path, "--out", str(tmp_path / "run"),
                       "--epochs", "1", "--no-progress"]) == 0
    assert "no attention group: the model pools each sequence without attention (a plain MLP, not DIN)" in caplog.text
    assert "test AUC" in caplog.text and "GAUC n/a (every user has one row" in caplog.text


def test_latest_first_sequences_keep_their_first_ids(tutorial_dir, tmp_path):
    """A dataset file may list a sequence newest first: a cut then keeps its first ids."""
    edit = lambda t: t.replace('negHistMovieIds = { kind = "sequence" }',  # noqa: E731
                               'negHistMovieIds = { kind = "sequence", order = "latest-first", max_len = 3 }')
    splits = load_splits(tutorial_dir, DINConfig(dataset=bad_file(tmp_path, tutorial_dir, edit)))
    encoder = splits.encoders.sequence["negHistMovieIds"]
    assert encoder.order == "latest-first" and encoder.max_len == 3
    test = pd.read_csv(os.path.join(tutorial_dir, "test.csv"), dtype=str, keep_default_na=False)
    expected = np.zeros((len(test), 3), np.int32)
    for row, history in enumerate(test["negHistMovieIds"]):
        ids = history.split("|")[:3] if history else []
        expected[row, : len(ids)] = encoder.vocabulary.encode(np.array(ids, dtype=str))
    assert (test["negHistMovieIds"].str.count("\\|") >= 3).any()  # some are cut
    np.testing.assert_array_equal(splits.test["negHistMovieIds"], expected)


def test_missing_dataset_file(tutorial_dir, tmp_path):
    with pytest.raises(DataError, match="no such dataset file"):
        load_splits(tutorial_dir, DINConfig(dataset=str(tmp_path / "none.toml")))


@pytest.mark.parametrize("column, value", [
    ("age", "2_5"), ("age", " 25 "), ("age", "1e1"), ("age", ""), ("age", "inf"), ("age", "nan"), ("age", "0x19"),
    ("movieId", "2571.0"), ("movieId", "2571.5"), ("movieId", " 2571 "), ("movieId", "2_571"),
    ("histHighRatedMovieIds", "260,1196"), ("histHighRatedMovieIds", "260| 1196"), ("histHighRatedMovieIds", ""),
    ("label", "1.0"), ("label", "2"), ("label", ""), ("label", "1_0"),
])
def test_training_and_scoring_read_a_value_alike(column, value, tutorial_dir, tutorial_splits):
    """One reader: a tutorial file's row read for training (the dataset file's
    reader) and for scoring (predict.py's) gives the same value, or the same
    one-line refusal."""
    from data.csv_files import read_csv
    from data.rows import to_columns
    from data.sources import dataset_file
    from data.sources.tutorial import LAYOUT

    path = os.path.join(tutorial_dir, "test.csv")
    frame, lines = read_csv(path)
    frame = frame.head(3).copy()
    frame.loc[1, column] = value

    def outcome(read):
        try:
            got = read()[LABEL if column == "label" else column]
        except DataError as error:
            return str(error)
        return got[1]

    trained = outcome(lambda: dataset_file.columns_of(frame, lines[:3], path, LAYOUT))
    scored = outcome(lambda: to_columns(frame, tutorial_splits.encoders, path, lines[:3]))
    assert trained == scored or (trained != trained and scored != scored), (trained, scored)  # NaN: imputed alike
