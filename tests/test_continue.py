"""train.py --continue-from RUN: a finished run continued on newer data, in
both backends. Every id RUN knew keeps its row and its weights, new ids get
rows, Adam's state carries over; the run records its parent, which is never
written; predict.py and export.py use it as any run; a resume of it ends
where it would have; every refusal is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import export
import predict
import train
from data.encoders import FeatureEncoders
from training import continual, run_dir
from training.backend import make_backend

pytestmark = pytest.mark.slow  # parents trained in both backends, then continued
RUN = ["--max-hist", "6", "--no-progress", "--epochs", "1", "--batch-size", "64"]


@pytest.fixture(scope="module")
def older(csv_release_dir, tmp_path_factory) -> str:
    """The release without its latest third of ratings: the data a parent saw."""
    folder = tmp_path_factory.mktemp("older")
    ratings = pd.read_csv(pathlib.Path(csv_release_dir) / "ratings.csv")
    cut = ratings["timestamp"].quantile(0.66)
    ratings[ratings["timestamp"] < cut].to_csv(folder / "ratings.csv", index=False)
    (folder / "movies.csv").write_bytes((pathlib.Path(csv_release_dir) / "movies.csv").read_bytes())
    return str(folder)


@pytest.fixture(scope="module", params=["torch", "jax"])
def parent(request, older, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp(f"parent-{request.param}") / "run"
    assert train.main(["--backend", request.param, "--data", older, "--out", str(out), "--split", "time", *RUN]) == 0
    return out


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_continued_run_grows_from_its_parent(parent, csv_release_dir, tmp_path, capsys):
    before = snapshot(parent)
    out = tmp_path / "continued"
    assert train.main(["--continue-from", str(parent), "--data", csv_release_dir, "--out", str(out), "--no-progress",
                       "--epochs", "1", "--learning-rate", "0.001"]) == 0
    assert snapshot(parent) == before  # the parent is only read
    config = json.loads((out / "config.json").read_text())
    record = config["continued_from"]
    timeline = json.loads((parent / "metrics.json").read_text())["timeline"]
    assert record["path"] == str(parent) and record["timeline"] == timeline and record["continue_on"] == "new"
    assert record["trained_after"] == timeline["train"]["last"] and len(record["weights_sha256"]) == 64
    assert config["optimizer"]["learning_rate"] == 0.001 and config["model"] == json.loads(
        (parent / "config.json").read_text())["model"]
    # Trained on the samples after the parent's last: its training split starts later.
    assert json.loads((out / "metrics.json").read_text())["timeline"]["train"]["first"] > timeline["train"]["last"]
    # Every id keeps its number; new ones follow.
    old, new = (FeatureEncoders.from_json((folder / "encoders.json").read_text()) for folder in (parent, out))
    grew = 0
    for name, encoder in {**new.categorical, **new.sequence}.items():
        before_terms = ({**old.categorical, **old.sequence})[name].vocabulary.terms
        assert encoder.vocabulary.terms[: len(before_terms)].tolist() == before_terms.tolist(), name
        grew += len(encoder.vocabulary.terms) - len(before_terms)
    assert grew > 0
    # predict.py takes it as any run; it knows at least the ids the parent knew on the same rows.
    unknown = []
    for run in (parent, out):
        assert predict.main([str(run), "--data", csv_release_dir, "--out", str(tmp_path / f"{run.name}.csv"),
                             "--no-progress"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ids unknown"))
        unknown.append(int(line.split("userId ")[1].split(" of")[0].replace(",", "")))  # new users arrived
    assert unknown[1] <= unknown[0], unknown
    user = str(pd.read_csv(pathlib.Path(csv_release_dir) / "ratings.csv")["userId"].iloc[-1])
    assert predict.main([str(out), "--data", csv_release_dir, "--explain", user, "--out", str(tmp_path / "user.png")]) == 0
    fmt = "torch" if json.loads((out / "metrics.json").read_text())["backend"] == "torch" else "stablehlo"
    assert export.main([str(out), "--format", fmt, "--out", str(tmp_path / "serving")]) == 0


def test_growth_keeps_every_old_row_and_adam_state(parent, csv_release_dir):
    """start_from: old ids' rows and moments as the parent left them, new rows
    as the model initialises them with zero moments, the unknown row moved
    to the end, Adam's step count kept."""
    run = continual.Parent.read(str(parent))
    config, after = continual.settings(run, {"seed": 3}, "new")
    splits = continual.splits(csv_release_dir, config, after, run)
    backend = make_backend(run.backend, splits.encoders.schema(), config, splits.train)
    fresh = backend.weights()
    continual.start_from(backend, run)
    weights, moments = backend.weights(), backend.optimizer_state()
    assert int(moments["count"]) == int(run.optimizer["count"]) > 0
    tables = [name for name in weights if weights[name].shape != run.weights[name].shape]
    assert tables  # the vocabularies grew
    for name in weights:
        old, new = run.weights[name], weights[name]
        if name not in tables:
            np.testing.assert_array_equal(new, old)
            continue
        n = len(old)
        np.testing.assert_array_equal(new[: n - 1], old[:-1])
        np.testing.assert_array_equal(new[-1], old[-1])  # the unknown id's row
        np.testing.assert_array_equal(new[n - 1 : -1], fresh[name][n - 1 : -1])
        for key in ("mu", "nu"):
            moment, parent_moment = moments[f"{key}/{name}"], run.optimizer[f"{key}/{name}"]
            np.testing.assert_array_equal(moment[: n - 1], parent_moment[:-1])
            assert not moment[n - 1 : -1].any()


def test_a_continued_run_resumes_where_it_would_have_ended(parent, csv_release_dir, tmp_path):
    whole = tmp_path / "whole"
    args = ["--continue-from", str(parent), "--data", csv_release_dir, "--no-progress", "--epochs", "2",
            "--checkpoint-every", "3"]
    assert train.main([*args, "--out", str(whole)]) == 0
    # A copy of the run as a kill would leave it: its setup and its first checkpoint, then resumed.
    checkpoints = sorted((whole / "checkpoints").iterdir())
    assert checkpoints
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    for name in ("config.json", "encoders.json"):
        (interrupted / name).write_bytes((whole / name).read_bytes())
    (interrupted / run_dir.UNFINISHED).write_text("x")
    (interrupted / "checkpoints").mkdir()
    (interrupted / "checkpoints" / checkpoints[0].name).symlink_to(checkpoints[0], target_is_directory=True)
    assert train.main(["--resume", str(interrupted), "--no-progress"]) == 0
    done, again = (json.loads((folder / "metrics.json").read_text()) for folder in (whole, interrupted))
    assert again["test_auc"] == done["test_auc"] and again["steps"] == done["steps"]


def continue_argv(paths: dict, **changes) -> list[str]:
    """train.py's arguments to continue paths['parent'] on the full release, with flags changed or added."""
    flags = {"--continue-from": paths["parent"], "--data": paths["release"], "--out": paths["out"]} | changes
    return [x for flag_, value in flags.items() for x in ((flag_,) if value is True else (flag_, value))] + \
        ["--no-progress"]


REFUSALS = {  # case -> (argv from the paths, the words of the one line)
    "a size flag": (lambda p: continue_argv(p, **{"--embedding-dim": "8"}), "--embedding-dim: a continued run keeps"),
    "a data flag": (lambda p: continue_argv(p, **{"--max-hist": "9"}), "--max-hist: a continued run keeps"),
    "another backend": (lambda p: continue_argv(p, **{"--backend": p["other backend"]}), "continue it with --backend"),
    "no newer samples": (lambda p: continue_argv(p, **{"--data": p["older"]}),
                         "holds no training sample later than the parent's last"),
    "other data": (lambda p: continue_argv(p, **{"--data": p["tutorial"]}), "is not data the run can continue on"),
    "an unfinished run": (lambda p: continue_argv(p, **{"--continue-from": p["unfinished"]}), "the run did not finish"),
    "the parent as --out": (lambda p: continue_argv(p, **{"--out": p["parent"], "--overwrite": True}),
                            "--continue-from"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line(case, parent, older, csv_release_dir, tutorial_dir, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "encoders.json", run_dir.WEIGHTS):
        (unfinished / name).write_bytes((parent / name).read_bytes())
    (unfinished / run_dir.UNFINISHED).write_text("x")
    backend = run_dir.read_weights(str(parent / run_dir.WEIGHTS))[1]
    paths = {"parent": str(parent), "release": csv_release_dir, "out": str(tmp_path / "out"), "older": older,
             "tutorial": tutorial_dir, "unfinished": str(unfinished),
             "other backend": "jax" if backend == "torch" else "torch"}
    argv, words = REFUSALS[case]
    before = snapshot(parent)
    assert train.main(argv(paths)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "out").exists() and snapshot(parent) == before


def test_continue_flags_that_do_not_fit_are_refused_by_the_parser(parent, csv_release_dir, tmp_path, capsys):
    for argv, words in ((["--continue-from", str(parent), "--resume", str(parent)], "without --resume"),
                        (["--continue-from", str(parent), "--out", str(tmp_path / "o")], "give --data and --out"),
                        (["--backend", "torch", "--data", csv_release_dir, "--out", str(tmp_path / "o"),
                          "--continue-on", "all"], "--continue-on is for --continue-from")):
        with pytest.raises(SystemExit) as exit_:
            train.parse_args(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("source", ["ml1m_dir", "amazon_dir", "tutorial_dir"])
def test_every_source_with_times_continues(source, request, tmp_path, capsys):
    """Raw MovieLens-1M, Amazon and a dataset file naming its time column (the
    tutorial's): a run continues on every training sample of the same data
    (--continue-on all); there is none later than its own (--continue-on new)."""
    data = request.getfixturevalue(source)
    parent = tmp_path / "parent"
    assert train.main(["--backend", "torch", "--data", data, "--out", str(parent), "--split", "time", *RUN,
                       "--cache-dir", str(tmp_path / "cache")]) == 0
    argv = ["--continue-from", str(parent), "--data", data, "--no-progress", "--epochs", "1", "--cache-dir",
            str(tmp_path / "cache")]
    assert train.main([*argv, "--out", str(tmp_path / "all"), "--continue-on", "all"]) == 0
    record = json.loads((tmp_path / "all" / "config.json").read_text())["continued_from"]
    assert record["continue_on"] == "all" and record["trained_after"] is None
    capsys.readouterr()
    assert train.main([*argv, "--out", str(tmp_path / "new")]) == 2
    assert "holds no training sample later than the parent's last" in capsys.readouterr().err
