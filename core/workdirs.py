"""Working folders of jobs that write beside their output (builds, exports,
downloads, split files): each named by its host and process, so a later job
of the same kind removes the folders a killed one left behind, and never
those of a job still running (on this host; another host's are left to it).
And the free space a long job checks for before it starts writing."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from core.errors import UserError


def work_dir(prefix: str, parent: str) -> str:
    """A new private folder `parent/<prefix><host>-<pid>-<random>`, after removing
    the `prefix` folders in `parent` whose process on this host has ended."""
    sweep(prefix, parent)
    return tempfile.mkdtemp(prefix=f"{prefix}{_host()}-{os.getpid()}-", dir=parent)


def sweep(prefix: str, parent: str) -> list[str]:
    """Removes `parent/<prefix><this host>-<pid>-*` folders of ended processes; returns their paths."""
    mine = f"{prefix}{_host()}-"
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        pid = name[len(mine):].split("-", 1)[0] if name.startswith(mine) else ""
        if pid.isdigit() and not _alive(int(pid)):
            path = os.path.join(parent, name)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def require_space(path: str, needed: int, what: str, hint: str) -> None:
    """Refuses in one line, before a long job, when the file system holding
    `path` (or its nearest existing parent) has less than `needed` bytes free."""
    where = os.path.abspath(path)
    while not os.path.exists(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise UserError(f"{path}: {what} needs about {_size(needed)} and {_size(free)} is free there; {hint}")


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"  # '-' separates the name's fields


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
