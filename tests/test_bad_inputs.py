"""A user's mistakes, table-driven: each ends in one line naming the file,
line, column or flag and what to do, with exit code 2 (never a traceback),
and nothing already written is lost.

Every case runs the real command (`train.py` or `python -m parity`) in this
process; an exception that is not a user error would fail the test with its
traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

import train
from export import main as export_main
from parity.__main__ import main as parity_main
from predict import main as predict_main

RATINGS = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{4 + (u + m) % 2}.0,{100 * m}\n"
                                                       for u in range(1, 6) for m in range(10, 18))
MOVIES = "movieId,title,genres\n" + "".join(f"{m},Movie {m},Drama\n" for m in range(10, 18))
USERS = "".join(f"{u}::F::25::1::10001\n" for u in range(1, 6))
DAT_MOVIES = "".join(f"{m}::Movie {m}::Drama\n" for m in range(10, 18))
DAT_RATINGS = "".join(f"{u}::{m}::4::{100 * m}\n" for u in range(1, 6) for m in range(10, 18))


def write(folder: pathlib.Path, **files) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(folder)


def tutorial_copy(tmp: pathlib.Path, tutorial_dir: str, edit=None) -> str:
    """A copy of the synthetic tutorial folder; edit(train_text) -> new train.csv text or bytes."""
    target = tmp / "tutorial"
    shutil.copytree(tutorial_dir, target)
    if edit:
        text = (target / "train.csv").read_text()
        out = edit(text)
        (target / "train.csv").write_bytes(out if isinstance(out, bytes) else out.encode())
    return str(target)


def no_ages(text: str) -> str:
    lines = text.splitlines()
    column = lines[0].split(",").index("age")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[column] = ""
    return "\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n"


def torch_run(tmp, data, *extra):
    return ["--backend", "torch", "--data", data, "--out", str(tmp / "run"), "--no-progress", *extra]


# (id, argv builder (tmp, tutorial_dir) -> argv, words the one-line error holds)
TRAIN_CASES = [
    ("renamed header", lambda t, d: torch_run(t, write(t / "d", **{"ratings.csv": RATINGS.replace("movieId", "itemId", 1),
                                                                  "movies.csv": MOVIES})),
     ["ratings.csv: the header 'userId,itemId,rating,timestamp' lacks ['movieId']", "in any order"]),
    ("missing ratings column", lambda t, d: torch_run(t, write(t / "d", **{"ratings.csv": "userId,movieId,rating\n1,10,4\n",
                                                                          "movies.csv": MOVIES})),
     ["ratings.csv", "lacks ['timestamp']"]),
    ("user listed twice", lambda t, d: torch_run(t, write(t / "d", **{"ratings.dat": DAT_RATINGS, "movies.dat": DAT_MOVIES,
                                                                     "users.dat": USERS + "3::M::18::2::10002\n"})),
     ["users.dat, line 6: user 3 listed twice"]),
    ("line numbers count blank lines", lambda t, d: torch_run(t, write(t / "d", **{
        "ratings.csv": RATINGS.replace("\n", "\n\n", 3).replace("1,12,5.0", "1,12,five"), "movies.csv": MOVIES})),
     ["ratings.csv, line 7, column 'rating': not a number (value 'five')"]),
    ("movie listed twice", lambda t, d: torch_run(t, write(t / "d", **{"ratings.csv": RATINGS,
                                                                      "movies.csv": MOVIES + "10,Again,Comedy\n"})),
     ["movies.csv, line 10: movie 10 listed twice"]),
    ("non-UTF-8 tutorial CSV", lambda t, d: torch_run(t, tutorial_copy(t, d, lambda s: s.encode()[:200] + b"\xe9" + s.encode()[200:])),
     ["train.csv, line", "not valid UTF-8"]),
    ("every age missing", lambda t, d: torch_run(t, tutorial_copy(t, d, no_ages)),
     ["train.csv: column 'age': every training value is missing"]),
    ("tutorial column missing", lambda t, d: torch_run(t, tutorial_copy(t, d, lambda s: s.replace("label", "clicked", 1))),
     ["train.csv: missing column(s) ['label']"]),
    ("empty term in a sequence", lambda t, d: torch_run(t, tutorial_copy(t, d, lambda s: s.replace("|", "||", 1))),
     ["train.csv, line 2", "empty term"]),
    ("unknown folder", lambda t, d: torch_run(t, write(t / "d", **{"notes.txt": "hi"})), ["no data found", "dataset.toml", "ratings.csv"]),
    ("missing folder", lambda t, d: torch_run(t, str(t / "nowhere")), ["no such folder"]),
    ("learning rate nan", lambda t, d: torch_run(t, d, "--learning-rate", "nan"), ["--learning-rate", "finite"]),
    ("learning rate negative", lambda t, d: torch_run(t, d, "--learning-rate", "-0.1"), ["--learning-rate", "> 0"]),
    ("weight decay inf", lambda t, d: torch_run(t, d, "--mlp-weight-decay", "inf"), ["--mlp-weight-decay", "finite"]),
    ("zero epochs", lambda t, d: torch_run(t, d, "--epochs", "0"), ["--epochs", ">= 1"]),
    ("batch of one", lambda t, d: torch_run(t, d, "--batch-size", "1"), ["--batch-size", "BatchNorm"]),
    ("valid fraction 1", lambda t, d: torch_run(t, d, "--valid-fraction", "1"), ["--valid-fraction", "[0, 1)"]),
    ("negative max-len", lambda t, d: torch_run(t, d, "--max-len", "-3"), ["--max-len", ">= 0"]),
    ("bad mesh", lambda t, d: ["--backend", "jax", "--data", d, "--out", str(t / "run"), "--mesh", "data=x"],
     ["--mesh 'data=x'"]),
    ("mesh too big", lambda t, d: ["--backend", "jax", "--data", d, "--out", str(t / "run"), "--mesh", "data=64"],
     ["--mesh data=64", "needs 64 devices"]),
    ("torch bfloat16", lambda t, d: torch_run(t, d, "--dtype", "bfloat16"), ["--dtype bfloat16", "torch"]),
    ("torch mesh", lambda t, d: torch_run(t, d, "--mesh", "data=1"), ["--mesh: for --backend jax (torch runs one device)"]),
    ("torch device banana", lambda t, d: torch_run(t, d, "--device", "banana"), ["--device banana: not a torch device"]),
    ("torch device not there", lambda t, d: torch_run(t, d, "--device", "cuda:64"), ["--device cuda:64", "CUDA device(s)"]),
    ("jax device", lambda t, d: ["--backend", "jax", "--data", d, "--out", str(t / "run"), "--device", "cpu"],
     ["--device cpu: for --backend torch"]),
    ("negative seed", lambda t, d: torch_run(t, d, "--seed", "-1"), ["--seed", "must be in [0, 2**32)"]),
    ("cache dir is a file", lambda t, d: torch_run(t, d, "--cache-dir", write(t / "c", **{"cache": "x"}) + "/cache"),
     ["--cache-dir", "is a file, not a folder"]),
    ("seed too big", lambda t, d: torch_run(t, d, "--seed", str(2**64)), ["--seed", "must be in [0, 2**32)"]),
    ("protocol of the tutorial split", lambda t, d: torch_run(t, d, "--protocol", "paper"),
     ["--protocol paper", "is tutorial data, which does not use it", "drop it"]),
    ("split of the tutorial split", lambda t, d: torch_run(t, d, "--split", "leave-last-out"),
     ["--split leave-last-out", "is tutorial data", "(for raw MovieLens"]),
    ("torch steps per call", lambda t, d: torch_run(t, d, "--steps-per-call", "4"), ["--steps-per-call: for --backend jax"]),
    ("torch history share", lambda t, d: torch_run(t, d, "--history-share", "0.5"), ["--history-share: for --backend jax"]),
    ("torch attention input", lambda t, d: torch_run(t, d, "--attention-input", "concat"),
     ["--attention-input: for --backend jax"]),
    ("decay without a schedule", lambda t, d: torch_run(t, d, "--decay-steps", "10"), ["--decay-steps", "--lr-schedule"]),
    ("low-rated history of the tutorial split", lambda t, d: torch_run(t, d, "--low-rated-history"),
     ["--low-rated-history", "tutorial data", "sequential protocol only"]),
    ("out is a file", lambda t, d: torch_run(t, d) + ["--out", write(t / "f", **{"x": "x"}) + "/x"], ["--out", "is a file"]),
    ("out under a file", lambda t, d: torch_run(t, d) + ["--out", write(t / "f", **{"x": "x"}) + "/x/run"],
     ["--out", "is a file, not a folder"]),
    ("resume without a checkpoint", lambda t, d: ["--backend", "torch", "--resume", str(t)], ["no checkpoint to resume from"]),
    ("duplicated header name", lambda t, d: torch_run(t, tutorial_copy(t, d, lambda s: s.replace(",occupation,", ",gender,", 1))),
     ["train.csv, line 1: the header names column 'gender' twice (fields 3 and 5)"]),
    ("one training row", lambda t, d: torch_run(t, tutorial_copy(t, d, lambda s: "\n".join(s.splitlines()[:2]) + "\n"),
                                                "--valid-on-test"),
     ["the training split has 1 row(s)", "at least 2"]),
    ("labels of one class", lambda t, d: torch_run(t, tutorial_copy(t, d, all_liked)), ["every training label is 1", "both"]),
    ("diverges, torch", lambda t, d: torch_run(t, d, "--learning-rate", "1e30"), ["training diverged", "--learning-rate"]),
    ("diverges, jax", lambda t, d: ["--backend", "jax", "--data", d, "--out", str(t / "run"), "--no-progress",
                                    "--learning-rate", "1e30", "--epochs", "1"], ["training diverged", "--learning-rate"]),
    ("empty out", lambda t, d: torch_run(t, d) + ["--out", ""], ["--out ''", "an empty path"]),
]


def all_liked(text: str) -> str:
    lines = text.splitlines()
    return "\n".join([lines[0]] + [line.rsplit(",", 1)[0] + ",1" for line in lines[1:]]) + "\n"


@pytest.mark.parametrize("make, words", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses_bad_input_in_one_line(make, words, tutorial_dir, tmp_path, capsys):
    code = train.main(make(tmp_path, tutorial_dir))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in err


@pytest.mark.slow
def test_distributed_without_a_coordinator(tutorial_dir, tmp_path):
    # A child process: jax.distributed.initialize must come before any other JAX call.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "train.py", "--backend", "jax", "--data", tutorial_dir, "--out", str(tmp_path / "r"),
                             "--distributed"], cwd=pathlib.Path(__file__).parents[1], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("JAX_")}, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: --distributed:") and "JAX_COORDINATOR_ADDRESS" in result.stderr


def test_out_is_never_replaced_silently(tutorial_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"a run's weights")
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "1")) == 2
    assert "not empty" in capsys.readouterr().err and (out / "model.safetensors").read_bytes() == b"a run's weights"
    # A file named as a run's but no run's (no config.json beside it): --overwrite refuses it too.
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "1", "--overwrite")) == 2
    assert "no config.json" in capsys.readouterr().err and (out / "model.safetensors").read_bytes() == b"a run's weights"
    (out / "model.safetensors").unlink()
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "1")) == 0  # an empty folder takes a run
    assert sorted(os.listdir(out)) == ["config.json", "encoders.json", "history.csv", "history.png", "metrics.json",
                                       "model.safetensors", "optimizer.safetensors"]


@pytest.fixture(scope="module")
def finished_run(tutorial_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train.main(["--backend", "torch", "--data", tutorial_dir, "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    return out


def damaged_copy(run: pathlib.Path, tmp: pathlib.Path, damage) -> str:
    target = tmp / "damaged"
    shutil.copytree(run, target)
    damage(target)
    return str(target)


def truncate(path: pathlib.Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def fewer_terms(run: pathlib.Path) -> None:
    encoders = json.loads((run / "encoders.json").read_text())
    encoders["categorical"]["movieId"]["terms"] = encoders["categorical"]["movieId"]["terms"][:-3]
    (run / "encoders.json").write_text(json.dumps(encoders))


PARITY_CASES = [
    ("not a run", lambda run, t: [str(t)], ["config.json: missing", "run directory"]),
    ("truncated weights", lambda run, t: [damaged_copy(run, t, lambda r: truncate(r / "model.safetensors"))],
     ["model.safetensors: damaged weights file"]),
    ("vocabulary no longer fits", lambda run, t: [damaged_copy(run, t, fewer_terms)],
     ["do not fit the model that encoders.json describes"]),
    ("no metrics.json", lambda run, t: [damaged_copy(run, t, lambda r: (r / "metrics.json").unlink())],
     ["did not finish"]),
    ("damaged config.json", lambda run, t: [damaged_copy(run, t, lambda r: truncate(r / "config.json"))],
     ["config.json: not valid JSON"]),
    ("data in another format", lambda run, t: [str(run), "--data", write(t / "raw", **{"ratings.csv": RATINGS, "movies.csv": MOVIES})],
     ["lack the run's features"]),
]


def jax_run_of(run: pathlib.Path, tmp: pathlib.Path, damage=lambda r: None) -> str:
    """The torch run as if JAX had trained it: its weights converted to Flax names."""
    from din_jax.inference import variable_shapes
    from inference.convert import to_names, torch_to_flax
    from training.run_dir import WEIGHTS, read_run, write_weights

    config, encoders, weights, _ = read_run(str(run))
    target = pathlib.Path(damaged_copy(run, tmp, damage))
    flax = torch_to_flax(weights, variable_shapes(encoders.schema(), config))
    write_weights(str(target / WEIGHTS), to_names(flax), "jax")
    return str(target)


# (id, command, argv (run, tmp, tutorial_dir) -> list, words)
SERVING_CASES = [
    ("jax run, encoders of another run, predict", predict_main,
     lambda run, t, d: [jax_run_of(run, t, fewer_terms), "--data", os.path.join(d, "test.csv"), "--out", str(t / "p.csv")],
     ["do not fit the model that encoders.json describes"]),
    ("jax run, encoders of another run, stablehlo", export_main,
     lambda run, t, d: [jax_run_of(run, t, fewer_terms), "--format", "stablehlo", "--out", str(t / "e")],
     ["do not fit the model that encoders.json describes"]),
    ("jax run, whole: it scores", predict_main,
     lambda run, t, d: [jax_run_of(run, t), "--data", os.path.join(d, "test.csv"), "--out", str(t / "p.csv")],
     None),  # sanity: the converted run itself scores
    ("unfinished though metrics.json is there", predict_main,
     lambda run, t, d: [damaged_copy(run, t, lambda r: (r / "UNFINISHED").write_text("x")), "--data",
                        os.path.join(d, "test.csv"), "--out", str(t / "p.csv")],
     ["did not finish (it holds UNFINISHED)", "`python train.py --resume"]),
    ("attention beyond the history", predict_main,
     lambda run, t, d: [str(run), "--data", os.path.join(d, "test.csv"), "--out", str(t / "p.csv"), "--attention", "1000"],
     None),
    ("parity batch of 0", parity_main, lambda run, t, d: [str(run), "--batch-size", "0"], ["--batch-size 0", ">= 2"]),
    ("parity batch of -3", parity_main, lambda run, t, d: [str(run), "--batch-size", "-3"], ["--batch-size -3"]),
]


@pytest.mark.parametrize("command, make, words", [c[1:] for c in SERVING_CASES], ids=[c[0] for c in SERVING_CASES])
def test_serving_refuses_bad_input_in_one_line(command, make, words, finished_run, tutorial_dir, tmp_path, capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. pandas' PerformanceWarning of a frame built column by column
        code = command(make(finished_run, tmp_path, tutorial_dir))
    err = capsys.readouterr().err
    if words is None:  # a case that must work
        assert code == 0 and "Traceback" not in err, err
        return
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("make, words", [c[1:] for c in PARITY_CASES], ids=[c[0] for c in PARITY_CASES])
def test_parity_refuses_bad_input_with_exit_2(make, words, finished_run, tmp_path, capsys):
    code = parity_main([*make(finished_run, tmp_path), "--dtype", "float32"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


def test_divergence_stops_at_the_first_non_finite_loss(tutorial_dir, tmp_path, capsys, monkeypatch):
    from din_torch.backend import TorchBackend

    original = TorchBackend.train_batches

    def poisoned(self, data, batches, progress):  # the 3rd step of epoch 2 overflows
        losses = original(self, data, batches, progress)
        if self.optimizer.state_dict()["state"] and len(batches) > 3 and getattr(self, "_epochs", 0) == 1:
            losses[2] = float("nan")
        self._epochs = getattr(self, "_epochs", 0) + 1
        return losses

    monkeypatch.setattr(TorchBackend, "train_batches", poisoned)
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "3")) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss is nan at epoch 2, step 20 (batch 3 of 17); lower --learning-rate" in err
    assert (tmp_path / "run" / "UNFINISHED").exists() and not (tmp_path / "run" / "metrics.json").exists()


@pytest.fixture(scope="module")
def checkpointed_run(tutorial_dir, tmp_path_factory):
    """A torch run with checkpoints in epoch 2, made to look killed (no metrics.json, UNFINISHED)."""
    out = tmp_path_factory.mktemp("checkpointed") / "run"
    assert train.main(["--backend", "torch", "--data", tutorial_dir, "--out", str(out), "--epochs", "2", "--no-progress",
                       "--checkpoint-every", "5"]) == 0
    (out / "metrics.json").unlink()
    (out / "UNFINISHED").write_text("killed\n")
    return out


def every_checkpoint(run: pathlib.Path, name: str, change) -> None:
    for folder in (run / "checkpoints").iterdir():
        change(folder / name)


def edited_setting(run: pathlib.Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["optimizer"]["learning_rate"] = 0.01
    (run / "config.json").write_text(json.dumps(config))


def other_data(tutorial_dir: str, tmp: pathlib.Path) -> str:
    """The same folder layout with one more training row."""
    target = tmp / "other-data"
    shutil.copytree(tutorial_dir, target)
    with open(target / "train.csv", "a") as f:
        f.write((target / "train.csv").read_text().splitlines()[-1] + "\n")
    return str(target)


# (id, damage(run), extra argv (tmp, tutorial_dir) -> list, words)
RESUME_CASES = [
    ("every loop.json damaged", lambda r: every_checkpoint(r, "loop.json", truncate), None,
     ["loop.json: damaged", "every checkpoint"]),
    ("every best.safetensors damaged", lambda r: every_checkpoint(r, "best.safetensors", truncate), None,
     ["best.safetensors: damaged weights file"]),
    ("every state damaged", lambda r: every_checkpoint(r, "state/state.pt", truncate), None, ["state: damaged or unreadable"]),
    ("config.json damaged", lambda r: truncate(r / "config.json"), None, ["config.json: not valid JSON"]),
    ("config.json with an unknown setting", lambda r: (r / "config.json").write_text('{"learning_rat": 0.1}'), None,
     ["config.json: unknown settings ['learning_rat']"]),
    ("settings edited since the checkpoint", edited_setting, None,
     ["belongs to another run", "learning_rate 0.002 -> 0.01"]),
    ("other data", None, lambda t, d: ["--data", other_data(d, t)], ["belongs to another run", "the data files' content"]),
    ("another backend", None, lambda t, d: ["--backend", "jax"], ["written by the torch backend, not jax", "--backend torch"]),
]


@pytest.mark.parametrize("damage, extra, words", [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES])
def test_resume_refuses_a_damaged_or_foreign_checkpoint(damage, extra, words, checkpointed_run, tutorial_dir, tmp_path, capsys):
    run = pathlib.Path(damaged_copy(checkpointed_run, tmp_path, damage or (lambda r: None)))
    argv = ["--resume", str(run), "--no-progress", *(extra(tmp_path, tutorial_dir) if extra else [])]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_resume_takes_no_setting_flags(checkpointed_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--resume", str(checkpointed_run), "--learning-rate", "0.1"])
    assert exit_.value.code == 2 and "drop --learning-rate" in capsys.readouterr().err


def test_damaged_build_cache_is_rebuilt(tmp_path, caplog):
    from core.config import DINConfig
    from data.datasets import load_splits

    data = write(tmp_path / "d", **{"ratings.csv": RATINGS, "movies.csv": MOVIES})
    config = DINConfig(min_count=1, split="leave-last-out")
    first = {name: np.array(values) for name, values in load_splits(data, config, str(tmp_path / "cache")).train.items()}
    [entry] = (tmp_path / "cache" / "built").iterdir()
    truncate(entry / "train" / "histHighRatedMovieIds.npy")  # the arrays are memory-mapped from these files
    again = load_splits(data, config, str(tmp_path / "cache"))
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    for name, values in first.items():
        assert (again.train[name] == values).all()
    assert load_splits(data, config, str(tmp_path / "cache")).train.keys() == first.keys()  # whole again


@pytest.mark.parametrize("command, argv, words", [
    ("train", ["--backend", "jax", "--out", "x", "--dice", "nope"], "argument --dice: invalid choice: 'nope'"),
    ("train", ["--backend", "jax", "--out", "x", "--seed", "1e20"], "argument --seed: invalid int value: '1e20'"),
    ("predict", [], "the following arguments are required: RUN_DIR, --data"),
    ("export", ["run"], "the following arguments are required: --format, --out"),
    ("build", ["--data"], "argument --data: expected one argument"),
    ("build", ["--data", "x", "--build", "beam", "--runner", "Nonsense"], "argument --runner: invalid choice: 'Nonsense'"),
    ("build", ["--data", "x", "--build", "beam", "--direct_num_workers=2", "--nonsense=3", "banana"],
     "unrecognized arguments: --nonsense=3 banana (neither a flag of this command nor one of Beam's"),
    ("train", ["--backend", "jax", "--out", "x", "--build", "beam", "--epocs", "3"],
     "unrecognized arguments: --epocs 3 (neither a flag of this command nor one of Beam's pipeline options)"),
])
def test_a_flag_mistake_is_one_line_not_the_usage(command, argv, words, capsys):
    import importlib

    module = importlib.import_module(command)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(argv) if hasattr(module, "parse_args") else module.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and words in err and "usage:" not in err, err
    assert f"python {command}.py --help lists the flags" in err


@pytest.mark.parametrize("code, words", [(28, "no space left on its device; free space there"),
                                         (13, "permission denied: this user may not read or write it"),
                                         (30, "a read-only file system; write the output elsewhere")])
def test_a_full_disk_or_an_unwritable_place_is_one_line(code, words, tutorial_dir, tmp_path, capsys, monkeypatch):
    """Whatever writes when the disk fills or a folder refuses writes (here the
    run's weights, as orbax or safetensors would meet it), the command ends in
    one line naming the path, exit 2, no traceback."""
    import errno

    from training import run_dir

    def full(path, *args, **kwargs):
        raise RuntimeError("the writer's own wrapping") from OSError(code, os.strerror(code), path)

    monkeypatch.setattr(run_dir, "write_weights", full)
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors" in err and words in err, err
    assert errno.errorcode[code] in err and "Traceback" not in err


@pytest.mark.parametrize("what", ["run", "cache"])
def test_too_little_free_space_is_refused_before_the_job(what, ml1m_dir, tmp_path, capsys, monkeypatch):
    """Before training (the run's weights and checkpoints) and before building a
    cache entry (every split's rows), the free space is checked against the
    expected size: one line naming the path and the need, nothing left behind."""
    from core import workdirs

    actual = shutil.disk_usage

    def nearly_full(path):  # the run's folder, or the cache's, has 100 KB free
        usage = actual(path)
        full = str(tmp_path / what) in str(path)
        return usage._replace(free=100_000) if full else usage

    monkeypatch.setattr(workdirs.shutil, "disk_usage", nearly_full)
    cache_dir = tmp_path / "cache"
    argv = ["--backend", "torch", "--data", ml1m_dir, "--out", str(tmp_path / "run"), "--no-progress",
            "--cache-dir", str(cache_dir), "--epochs", "1", "--checkpoint-every", "5"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    need = "this run's weights and checkpoints needs about" if what == "run" else "this data's cache entry needs about"
    assert err.count("\n") == 1 and need in err and "is free there" in err, err
    assert not (tmp_path / "run").exists()
    entries = os.listdir(cache_dir / "built") if (cache_dir / "built").exists() else []
    assert len(entries) == (what == "run"), entries  # the data was built, or nothing was (no partial entry)


def test_running_out_of_memory_is_one_line(tutorial_dir, tmp_path, capsys, monkeypatch):
    """A build or a step that asks for more memory than the machine has (a huge
    --max-hist, say: 37.6 GiB on ml-latest-small) ends in one line saying how
    much and what to lower, and leaves no empty --out behind."""
    def huge(*args, **kwargs):
        raise MemoryError("Unable to allocate 37.6 GiB for an array with shape (100836, 100000) and data type int32")

    monkeypatch.setattr(train, "load_splits", huge)
    assert train.main(torch_run(tmp_path, tutorial_dir, "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not enough memory (Unable to allocate 37.6 GiB" in err and "--max-hist" in err, err
    assert not (tmp_path / "run").exists()


def as_written_before_the_settings_existed(path: pathlib.Path) -> None:
    """A checkpoint's loop.json as an older version wrote it: its fingerprint
    without the settings added since (their absence meant today's values)."""
    loop = json.loads(path.read_text())
    for name in ("pooling", "weight_decay_form"):
        del loop["fingerprint"]["config"][name]
    path.write_text(json.dumps(loop))


def test_an_older_checkpoint_of_the_same_run_resumes(checkpointed_run, tmp_path, capsys):
    """A run checkpointed by an earlier version, whose fingerprint lacks settings
    added since, resumes: the fingerprint is read as its config.json is (what
    an absent setting meant), not as 'another run' with settings never set."""
    run = pathlib.Path(damaged_copy(checkpointed_run, tmp_path, lambda r: every_checkpoint(
        r, "loop.json", as_written_before_the_settings_existed)))
    assert train.main(["--resume", str(run), "--no-progress"]) == 0, capsys.readouterr().err
    assert (run / "metrics.json").exists()
