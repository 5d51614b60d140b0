"""What a command may write: --out checked before anything is read or written,
and --overwrite replacing only what this project wrote, whole.

Every command that writes (train.py's run directory, export.py's folder,
predict.py's CSV or picture) checks its --out here first. Without
--overwrite an existing output is refused. With it, the old output is
replaced only if this project wrote it (a run directory or an export holding
nothing else; a predictions CSV or a picture of ours), never when it is, or
holds, the data being read, the run being read, the current folder, home or
a filesystem root. The new output is written beside the old one and swapped
in only when whole (`swap_in`), so a command that fails leaves the previous
output as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator

from core.config import DINConfig
from core.errors import ConfigError, UserError
from data.download import sha256_of
from training.backend import BACKENDS

# The names a run directory (training/run_dir.py, training/checkpoint.py) and
# an export (inference/export.py: manifest.json, encoders.json, model.*) hold.
RUN_NAMES = frozenset({"config.json", "encoders.json", "model.safetensors", "optimizer.safetensors", "history.csv",
                       "history.png", "metrics.json", "UNFINISHED", "checkpoints", ".lock"})
LOCK = ".lock"  # a run folder's writer: an OS lock on it, and who holds it
EXPORT_NAMES = frozenset({"manifest.json", "encoders.json", "encode.py"})
PICTURE_MARK = b"din-jax predict.py"  # in the PNG's Software field (inference/explain.py)
STAGED = ".new"  # train.py --overwrite trains into OUT.new, which replaces OUT when the run finishes


def _foreign(folder: str, kind: str) -> str | None:
    """Why `folder` is not a `kind` this project wrote (None: it is): an entry it
    would not have written there, or one of its own files' names holding
    something else (a user's config.json, a manifest of another tool)."""
    for name in sorted(os.listdir(folder)):
        if name.startswith(".tmp-"):  # an atomic write interrupted (training/run_dir.py)
            continue
        if kind == "run" and name not in RUN_NAMES:
            return f"holds {name!r}, which is no part of a run written by this project"
        if kind == "export" and name not in EXPORT_NAMES and not name.startswith("model."):
            return f"holds {name!r}, which is no part of an export written by this project"
    return _not_ours(folder, kind)


def _not_ours(folder: str, kind: str) -> str | None:
    """Whether the project's own file names in `folder` hold what it writes there:
    a run's config.json is a DINConfig, its weights name a backend, its
    checkpoints are steps; an export's manifest.json is this project's."""
    def unreadable(name: str) -> str:
        return f"its {name} is not one this project wrote"

    if kind == "run":
        if not os.path.isfile(os.path.join(folder, "config.json")):
            return "holds no config.json, so it is no run written by this project"
        try:
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
                DINConfig.from_json(f.read())
        except (OSError, ConfigError, UnicodeDecodeError):
            return unreadable("config.json")
        checkpoints = os.path.join(folder, "checkpoints")
        if os.path.exists(checkpoints) and (not os.path.isdir(checkpoints) or any(
                not name.startswith(("step-", ".tmp-step-")) for name in os.listdir(checkpoints))):
            return unreadable("checkpoints folder")
        weights = os.path.join(folder, "model.safetensors")
        if os.path.exists(weights):
            from safetensors import safe_open

            try:
                with safe_open(weights, framework="numpy") as f:  # the header only
                    backend = (f.metadata() or {}).get("backend")
            except Exception:  # safetensors' own error types, for a file that is not one
                backend = None
            if backend not in BACKENDS:
                return unreadable("model.safetensors")
        return None
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return "holds no manifest.json of this project, so it is no export written by it"
    if not isinstance(manifest, dict) or not {"format", "artifact", "inputs", "call"} <= set(manifest):
        return unreadable("manifest.json")
    return None


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _checked_place(flag: str, path: str) -> str:
    """The resolved path; refuses an empty one, or one that no folder can be made at."""
    if not path.strip():
        raise UserError(f"{flag} {path!r}: an empty path; name the output")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot write in {parent} ({error.strerror}); choose a writable place") from None
    return os.path.realpath(path)


def _refuse_precious(flag: str, path: str, resolved: str, protect: dict[str, str | None]) -> None:
    """Refuses an output that is, or holds, something read or the user's own places."""
    for what, place in protect.items():
        if place and _inside(os.path.realpath(place), resolved):
            raise UserError(f"{flag} {path}: it is or holds {what} {place}, which this command reads; "
                            "write the output somewhere else")
    cwd, home = os.path.realpath(os.getcwd()), os.path.realpath(os.path.expanduser("~"))
    if _inside(cwd, resolved) or resolved == home or os.path.ismount(resolved):
        what = ("is or holds the current folder" if _inside(cwd, resolved) else "is home" if resolved == home
                else "is a filesystem root")
        raise UserError(f"{flag} {path}: it {what}; an output gets a folder of its own")


def check_folder(flag: str, path: str, overwrite: bool, kind: str, protect: dict[str, str | None],
                 hint: str = "") -> bool:
    """Checks that `path` can take a new `kind` ('run' or 'export') folder.

    protect: {what: path} read by the command (--data, the dataset file, the
    run being read). Returns whether an existing output is to be replaced.
    Writes nothing."""
    resolved = _checked_place(flag, path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a folder")
    if not os.path.isdir(path) or not os.listdir(path):
        return False
    _refuse_precious(flag, path, resolved, protect)
    if not overwrite:
        raise UserError(f"{flag} {path}: the folder is not empty; choose a new folder or pass --overwrite to replace "
                        f"the {kind} it holds{hint}")
    if not os.access(path, os.W_OK | os.X_OK):  # found now, not after the whole training
        raise UserError(f"{flag} {path}: the folder is read-only for this user, so --overwrite cannot replace it; "
                        "change its permissions or choose another folder")
    foreign = _foreign(path, kind)
    if foreign is not None:
        raise UserError(f"{flag} {path}: {foreign}; --overwrite replaces only a {kind} folder this project wrote: "
                        "choose another folder (or remove it by hand)")
    return True


def staged(path: str) -> str:
    """Where train.py --overwrite writes the new run: OUT.new beside OUT, emptied
    first if an earlier overwrite left it (refused unless it is a run of ours)."""
    stage = os.path.abspath(path).rstrip(os.sep) + STAGED
    if os.path.islink(stage):
        raise UserError(f"--out {path}: {stage} is a symbolic link; --overwrite trains into that path before "
                        "replacing --out: move it away")
    if os.path.exists(stage):
        if not os.path.isdir(stage) or _foreign(stage, "run") is not None:
            raise UserError(f"--out {path}: {stage} exists and is not a run of this project; --overwrite trains "
                            "into it before replacing --out: move it away")
        shutil.rmtree(stage)
    return stage


def swap_in(new: str, path: str) -> None:
    """Puts the whole folder `new` at `path`, replacing what is there."""
    if not os.path.exists(path):
        os.replace(new, path)
        return
    if not os.listdir(path):  # an empty folder (perhaps the current one): filled, not replaced
        for name in os.listdir(new):
            os.replace(os.path.join(new, name), os.path.join(path, name))
        os.rmdir(new)
        return
    parent = os.path.dirname(os.path.abspath(path))
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
    os.rename(path, os.path.join(old, "previous"))
    os.rename(new, path)
    shutil.rmtree(old, ignore_errors=True)


def check_file(flag: str, path: str, overwrite: bool, protect: dict[str, str | None]) -> None:
    """Checks that `path` can take predict.py's CSV or picture: not a folder, not
    a file the command reads, and replaced (--overwrite) only if predict.py
    wrote it. Writes nothing."""
    resolved = _checked_place(flag, path)
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder, expected a file path")
    for what, place in protect.items():
        if place and resolved == os.path.realpath(place):
            raise UserError(f"{flag} {path}: it is {what}, which this command reads; write the output somewhere else")
    if not os.path.exists(path):
        return
    if not overwrite:
        raise UserError(f"{flag} {path}: exists; choose a new path or pass --overwrite to replace it")
    with open(path, "rb") as f:
        head = f.read(4096)
    ours = PICTURE_MARK in head if head.startswith(b"\x89PNG") else _marked(path)
    if not ours:
        raise UserError(f"{flag} {path}: not a file predict.py wrote, or changed since (its record "
                        f"{os.path.basename(mark_path(path))} does not match); --overwrite replaces only its own "
                        "predictions or pictures: choose another path, or remove the file by hand")


@contextlib.contextmanager
def locked(folder: str, flag: str = "--out") -> Iterator[None]:
    """One writer per run folder: an exclusive OS lock (flock) on `folder`/.lock
    while the block runs, released when it ends or the process dies. A second
    writer (another train.py into the same --out, a --resume of it, an
    --overwrite of it) ends in one line naming the holder. `folder` is made if
    missing, and removed again if the block leaves it empty."""
    created = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{flag} {folder}: {holder} is writing it; wait for it to end, or choose another "
                            "folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # its holder removed it as we opened it: take a fresh one
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})".encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not when the folder was swapped for a new one
                os.unlink(path)
        os.close(fd)
        with contextlib.suppress(OSError):
            if created and not os.listdir(folder):
                os.rmdir(folder)


def mark_path(path: str) -> str:
    """The record beside a predictions CSV: `.NAME.din.json` in its folder."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.din.json")


def mark_file(path: str) -> None:
    """Records that predict.py wrote `path` (its size and SHA-256), so that
    --overwrite later replaces it only while it holds exactly that."""
    record = {"written_by": "din-jax predict.py", "bytes": os.path.getsize(path), "sha256": sha256_of(path)}
    with open(mark_path(path), "w", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _marked(path: str) -> bool:
    """Whether `path` is a predictions CSV predict.py wrote and nobody changed
    since: its record beside it matches its size and SHA-256."""
    try:
        with open(mark_path(path), encoding="utf-8") as f:
            record = json.load(f)
        return (record.get("written_by") == "din-jax predict.py" and record.get("bytes") == os.path.getsize(path)
                and record.get("sha256") == sha256_of(path))
    except (OSError, ValueError, AttributeError):
        return False


def check_cache_dir(flag: str, path: str) -> None:
    """A cache folder that can be made or written: not a file, nor an unwritable place."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a folder; give a folder for downloads and built data")
    place = os.path.abspath(path)
    while not os.path.exists(place):
        place = os.path.dirname(place)
    if not os.path.isdir(place):
        raise UserError(f"{flag} {path}: {place} is a file, not a folder")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {place} is not writable by this user; choose a cache folder you can write")
