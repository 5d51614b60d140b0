"""The download path against a local HTTP server on 127.0.0.1 serving a zip built here."""

import functools
import hashlib
import http.server
import io
import os
import threading
import zipfile

import pytest

from core.errors import DataError
from data.download import DownloadError, Release, fetch
from data.sources.grouplens import read_raw


def ml1m_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
        archive.writestr("ml-1m/movies.dat", "10::Ten (1999)::Comedy\n")
        archive.writestr("ml-1m/ratings.dat", "1::10::5::100\n")
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 (an ephemeral port); yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "ml-1m.zip").write_bytes(ml1m_zip())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def release(url: str, sha256: str) -> Release:
    return Release("ml-1m", f"{url}/ml-1m.zip", sha256, "ml-1m")


def test_verified_download_is_unpacked_and_reused(server, tmp_path):
    cache = tmp_path / "cache"
    good = hashlib.sha256(ml1m_zip()).hexdigest()
    folder = fetch(release(server, good), str(cache), progress=False)
    assert sorted(os.listdir(folder)) == ["movies.dat", "ratings.dat", "users.dat"]
    assert read_raw(folder).format == "ml-1m"
    assert os.listdir(cache) == ["ml-1m"]  # no temporary file left
    # Cached: a second call does not download (the server URL is no longer needed).
    assert fetch(release("http://127.0.0.1:9", good), str(cache), progress=False) == folder


def test_wrong_checksum_is_rejected_and_nothing_is_left(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not match the expected"):
        fetch(release(server, "0" * 64), str(cache), progress=False)
    assert os.listdir(cache) == []


def test_offline_says_how_to_pass_a_local_copy(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="pass the folder holding its files with --data DIR"):
        fetch(release(server + "/missing", "0" * 64), str(cache), progress=False)
    assert os.listdir(cache) == []
