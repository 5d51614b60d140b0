"""Working folders of jobs that write beside their output (builds, exports,
downloads, split files): each named by its host and process, so a later job
of the same kind removes the folders a killed one left behind, and never
those of a job still running (on this host; another host's are left to it)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile


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
