"""--out and --overwrite in every command: only what this project wrote is
replaced, never what is read, never a user's files, and only once the new
output is whole (training/outputs.py).

Each case runs the real command in this process and checks both the one-line
refusal (exit 2) and that every file that was there is still there, byte for
byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import pandas as pd
import pytest

import export
import predict
import train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every file below folder -> its content's hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(code: int, capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def torch_args(data: str, out: str, *extra: str) -> list[str]:
    return ["--backend", "torch", "--data", data, "--out", out, "--epochs", "1", "--batch-size", "256",
            "--no-progress", *extra]


@pytest.fixture
def workspace(tutorial_run, tutorial_dir, tmp_path) -> pathlib.Path:
    """tmp/ holding a finished run, the data folder it was trained on, and a user's notes."""
    shutil.copytree(tutorial_run, tmp_path / "run")
    shutil.copytree(tutorial_dir, tmp_path / "data")
    (tmp_path / "notes.txt").write_text("a user's file")
    return tmp_path


def test_train_overwrite_refuses_folders_it_did_not_write(workspace, capsys, monkeypatch):
    before = snapshot(workspace)
    data = str(workspace / "data")
    # The data folder inside --out: refused before anything is touched (the --data check comes first).
    refused(train.main(torch_args(str(workspace / "data" / "missing"), str(workspace), "--overwrite")), capsys,
            "--data", "no such folder")
    refused(train.main(torch_args(data, str(workspace), "--overwrite")), capsys, f"--out {workspace}", "holds --data")
    refused(train.main(torch_args(data, data, "--overwrite")), capsys, "holds --data")
    # A run folder with a file of the user's in it.
    (workspace / "run" / "notes.txt").write_text("mine")
    refused(train.main(torch_args(data, str(workspace / "run"), "--overwrite")), capsys, "holds 'notes.txt'",
            "no part of a run")
    (workspace / "run" / "notes.txt").unlink()
    # The current folder, home, a filesystem root.
    monkeypatch.chdir(workspace / "run")
    refused(train.main(torch_args(data, ".", "--overwrite")), capsys, "the current folder")
    refused(train.main(torch_args(data, "/", "--overwrite")), capsys, "--out /")
    refused(train.main(torch_args(data, "", "--overwrite")), capsys, "an empty path")
    refused(train.main(torch_args(data, "/proc/din/run")), capsys, "--out /proc/din/run", "cannot write")
    assert snapshot(workspace) == before


def test_train_overwrite_replaces_a_run_only_when_the_new_one_is_whole(workspace, capsys):
    data, out = str(workspace / "data"), workspace / "run"
    before = snapshot(out)
    # A run that fails (it diverges) leaves the old run as it was; the new one is left beside it, unfinished.
    refused(train.main(torch_args(data, str(out), "--overwrite", "--learning-rate", "1e30")), capsys, "diverged")
    assert snapshot(out) == before
    assert (workspace / "run.new" / "UNFINISHED").exists()
    # A run that finishes replaces it whole (the leftover beside it is ours, so it is reused).
    assert train.main(torch_args(data, str(out), "--overwrite", "--seed", "7")) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 7
    assert sorted(os.listdir(out)) == ["config.json", "encoders.json", "history.csv", "history.png", "metrics.json",
                                       "model.safetensors", "optimizer.safetensors"]
    assert sorted(os.listdir(workspace)) == ["data", "notes.txt", "run"]  # nothing left beside it


def test_export_overwrite_keeps_the_old_export_until_the_new_one_is_whole(workspace, capsys, monkeypatch):
    run, out = str(workspace / "run"), workspace / "export"
    assert export.main([run, "--format", "torch", "--out", str(out)]) == 0
    good = snapshot(workspace)
    refused(export.main([run, "--format", "torch", "--out", run, "--overwrite"]), capsys, "holds RUN_DIR")
    refused(export.main([run, "--format", "torch", "--out", str(workspace), "--overwrite"]), capsys, "holds RUN_DIR")
    line = refused(export.main([run, "--format", "torch", "--out", str(out)]), capsys, "not empty", "--overwrite")
    assert "--resume" not in line  # export has no --resume
    monkeypatch.chdir(out)
    refused(export.main([run, "--format", "torch", "--out", ".", "--overwrite"]), capsys, "the current folder")
    refused(export.main([run, "--format", "torch", "--out", ""]), capsys, "an empty path")
    monkeypatch.chdir(workspace)
    # A run that cannot be exported (its weights no longer fit encoders.json): the old export stays.
    damaged = workspace / "damaged"
    shutil.copytree(run, damaged)
    encoders = json.loads((damaged / "encoders.json").read_text())
    encoders["categorical"]["movieId"]["terms"] = encoders["categorical"]["movieId"]["terms"][:-3]
    (damaged / "encoders.json").write_text(json.dumps(encoders))
    refused(export.main([str(damaged), "--format", "torch", "--out", str(out), "--overwrite"]), capsys, "do not fit")
    # A failure while writing: the old export stays.
    from din_torch.inference import Predictor

    def broken(self):
        raise RuntimeError("the exporter failed")

    monkeypatch.setattr(Predictor, "export", broken)
    with pytest.raises(RuntimeError, match="the exporter failed"):
        export.main([run, "--format", "torch", "--out", str(out), "--overwrite"])
    monkeypatch.undo()
    shutil.rmtree(damaged)
    assert snapshot(workspace) == good
    # A folder of the user's is never replaced, even with --overwrite.
    (out / "README.txt").write_text("mine")
    refused(export.main([run, "--format", "torch", "--out", str(out), "--overwrite"]), capsys, "holds 'README.txt'")
    (out / "README.txt").unlink()
    # A whole new export replaces the old one.
    assert export.main([run, "--format", "stablehlo", "--out", str(out), "--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["encode.py", "encoders.json", "manifest.json", "model.mlir", "model.stablehlo"]
    assert sorted(os.listdir(workspace)) == ["data", "export", "notes.txt", "run"]


def test_predict_overwrite_replaces_only_its_own_output(workspace, capsys):
    run, rows = str(workspace / "run"), str(workspace / "data" / "test.csv")
    before = snapshot(workspace)
    refused(predict.main([run, "--data", rows, "--out", rows, "--overwrite", "--no-progress"]), capsys, "it is --data")
    refused(predict.main([run, "--data", rows, "--out", str(workspace / "notes.txt"), "--overwrite", "--no-progress"]),
            capsys, "not a file predict.py wrote")
    refused(predict.main([run, "--data", rows, "--out", str(workspace / "run" / "history.csv"), "--overwrite",
                          "--no-progress"]), capsys, "not a file predict.py wrote")
    refused(predict.main([run, "--data", rows, "--out", "", "--no-progress"]), capsys, "an empty path")
    refused(predict.main([run, "--data", rows, "--out", "/proc/din/p.csv", "--no-progress"]), capsys, "cannot write")
    assert snapshot(workspace) == before
    out = workspace / "p.csv"
    assert predict.main([run, "--data", rows, "--out", str(out), "--no-progress"]) == 0
    first = pd.read_csv(out)
    # Replaced by the new predictions (their attention columns), the scores as before.
    assert predict.main([run, "--data", rows, "--out", str(out), "--overwrite", "--attention", "2", "--no-progress"]) == 0
    second = pd.read_csv(out)
    assert "probability" in first and len(second) == len(first) == len(pd.read_csv(rows))
    assert set(second.columns) > set(first.columns)  # the attention's columns: the file is the new one
    pd.testing.assert_series_equal(second["probability"], first["probability"])
    picture = workspace / "u.png"
    user = (workspace / "data" / "test.csv").read_text().splitlines()[1].split(",")[0]
    for _ in range(2):  # a picture of its own is replaced too
        assert predict.main([run, "--data", str(workspace / "data"), "--explain", user, "--out", str(picture),
                             "--overwrite"]) == 0


def dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_jobs_working_folder_is_removed_by_the_next_job_of_its_kind(workspace):
    """A killed export or build leaves its working folder beside the output; the
    next export (or build) there removes those of ended processes on this host,
    never a running job's, another host's, or anything else in the folder."""
    from core.workdirs import _host, sweep

    host, dead, parent = _host(), dead_pid(), workspace / "exports"
    parent.mkdir()
    leftovers = [parent / f".export-{host}-{dead}-abc", parent / f".build-{host}-{dead}-def"]
    kept = [parent / f".export-{host}-{os.getpid()}-ghi", parent / f".export-otherhost-{dead}-jkl",
            parent / ".export-old", parent / "notes"]
    for folder in leftovers + kept:
        folder.mkdir()
        (folder / "part").write_text("x")
    assert export.main([str(workspace / "run"), "--format", "torch", "--out", str(parent / "new")]) == 0
    assert not leftovers[0].exists() and leftovers[1].exists()  # an export sweeps exports' folders only
    assert all(folder.exists() for folder in kept)
    assert sweep(".build-", str(parent)) == [str(leftovers[1])] and not leftovers[1].exists()


def test_one_writer_per_run_folder(tutorial_dir, tmp_path, capsys):
    """While a run trains into --out, a second train.py into it, a --resume of it
    and an --overwrite of it each end in one line naming the writer, and
    touch nothing; the lock goes with the writer, even when it is killed."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = ["--backend", "torch", "--data", tutorial_dir, "--out", str(out), "--no-progress"]
    writer = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv, "--epochs", "1000", "--patience", "1000", "--checkpoint-every", "5"],
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints").is_dir():
            assert writer.poll() is None and time.time() < deadline
            time.sleep(0.05)
        setup = {name: (out / name).read_bytes() for name in ("config.json", "encoders.json", ".lock")}
        for other in (argv + ["--overwrite"], ["--resume", str(out), "--no-progress"]):
            assert train.main(other) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"process {writer.pid} on " in err and "is writing it" in err, err
            assert {name: (out / name).read_bytes() for name in setup} == setup and not (tmp_path / "run.new").exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert train.main(argv + ["--overwrite", "--epochs", "1"]) == 0  # the killed writer's lock went with it
    assert not (out / ".lock").exists() and (out / "metrics.json").exists()


@pytest.mark.parametrize("kind, files", [
    ("a Hugging Face model", {"config.json": '{"architectures": ["BertModel"], "hidden_size": 768}',
                              "model.safetensors": "not ours"}),
    ("only a config.json of someone else's", {"config.json": '{"lr": 0.1}'}),
    ("a checkpoints folder of another tool", {"checkpoints/epoch=3.ckpt": "weights"}),
    ("a manifest of another tool", {"manifest.json": '{"name": "app", "version": 2}'}),
    ("a damaged run's weights", {"config.json": "OUR_CONFIG", "model.safetensors": "xx"}),
])
def test_overwrite_replaces_a_folder_only_when_its_files_are_this_projects(kind, files, workspace, capsys):
    """--overwrite looks inside the files whose names a run uses: a folder of
    another tool's that happens to use them is refused in one line, untouched."""
    from core.config import DINConfig

    folder = workspace / "theirs"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text.replace("OUR_CONFIG", DINConfig().to_json()))
    before = snapshot(folder)
    data = str(workspace / "data")
    refused(train.main(torch_args(data, str(folder), "--overwrite")), capsys, f"--out {folder}", "this project")
    assert snapshot(folder) == before


def test_overwrite_replaces_predictions_only_while_they_are_as_predict_wrote_them(workspace, capsys):
    """A predictions CSV carries a record of what predict.py wrote (size and
    SHA-256, beside it): --overwrite replaces it while it matches, and refuses
    a user's CSV that merely has a `probability` column, or ours once edited."""
    run, rows = str(workspace / "run"), str(workspace / "data" / "test.csv")
    theirs = workspace / "scores.csv"
    theirs.write_text("user,item,probability\n1,2,0.5\n")
    refused(predict.main([run, "--data", rows, "--out", str(theirs), "--overwrite", "--no-progress"]), capsys,
            "not a file predict.py wrote")
    assert theirs.read_text() == "user,item,probability\n1,2,0.5\n"
    ours = workspace / "p.csv"
    assert predict.main([run, "--data", rows, "--out", str(ours), "--no-progress"]) == 0
    assert predict.main([run, "--data", rows, "--out", str(ours), "--overwrite", "--no-progress"]) == 0
    ours.write_text(ours.read_text() + "a user's note\n")
    edited = ours.read_text()
    refused(predict.main([run, "--data", rows, "--out", str(ours), "--overwrite", "--no-progress"]), capsys,
            "or changed since")
    assert ours.read_text() == edited


def test_overwrite_refuses_early_an_out_new_that_is_a_symbolic_link(workspace, capsys):
    """--overwrite trains into OUT.new: one that is a symbolic link is refused
    before the run trains, in one line, and left as it was."""
    data, run = str(workspace / "data"), workspace / "run"
    (workspace / "elsewhere").mkdir()
    (workspace / "run.new").symlink_to(workspace / "elsewhere")
    before = snapshot(run)
    refused(train.main(torch_args(data, str(run), "--overwrite")), capsys, "run.new is a symbolic link")
    assert (workspace / "run.new").is_symlink() and not os.listdir(workspace / "elsewhere")
    assert snapshot(run) == before
