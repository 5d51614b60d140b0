"""Download of a MovieLens release from GroupLens, verified and unpacked atomically.

The archive is streamed to a temporary file (progress bar with rate and ETA),
its SHA-256 checked against the pinned value, unpacked into a temporary
folder and renamed into place: an interrupted or corrupt download leaves
nothing behind that could be mistaken for data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile

from tqdm import tqdm

from core.errors import DataError, UserError
from core.workdirs import work_dir


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    url: str
    sha256: str
    folder: str  # the folder inside the archive that holds the data files


ML_1M = Release(
    "ml-1m",
    "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "ml-1m",
)


class DownloadError(UserError):
    """The release could not be fetched; the message says how to pass a local copy."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason  # why the fetch failed, e.g. the network's error


def default_cache_dir() -> str:
    return os.environ.get("DIN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "din-jax")


def _download(url: str, path: str, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {os.path.basename(url)}",
                      disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"could not download {url} ({reason}). Without network access, download the archive "
            f"elsewhere, unzip it and pass the folder holding its files with --data DIR",
            str(reason),
        ) from None


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(release: Release = ML_1M, cache_dir: str | None = None, progress: bool = True) -> str:
    """The folder of `release`'s files under `cache_dir`, downloaded the first time."""
    cache_dir = cache_dir or default_cache_dir()
    target = os.path.join(cache_dir, release.name)
    if os.path.isdir(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    work = work_dir(f".{release.name}-", cache_dir)
    try:
        archive = os.path.join(work, "archive.zip")
        _download(release.url, archive, progress)
        actual = sha256_of(archive)
        if actual != release.sha256:
            raise DataError(
                f"{release.url}: SHA-256 {actual} does not match the expected {release.sha256}; "
                "the download was discarded"
            )
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(work)
        unpacked = os.path.join(work, release.folder)
        if not os.path.isdir(unpacked):
            raise DataError(f"{release.url}: the archive has no folder {release.folder!r}")
        os.replace(unpacked, target)  # atomic: the folder appears whole or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
