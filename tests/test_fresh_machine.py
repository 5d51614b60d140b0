"""The MovieLens-1M tier on a machine with no data folder: fetched once from a
local server standing in for GroupLens, verified, rebuilt into the tutorial's
split and reused; offline, one line says how to provide the data."""

import functools
import hashlib
import http.server
import os
import pathlib
import threading

import pytest

from conftest import child_pytest
from synthetic_movielens import make_world, ml1m_zip

pytestmark = pytest.mark.slow  # child test sessions with a local download server
ROOT = pathlib.Path(__file__).resolve().parents[1]
TIER = ["tests/test_movielens.py", "-k", "real_seed_split or valid_on_test"]


@pytest.fixture(scope="module")
def grouplens(tmp_path_factory):
    """Serves a MovieLens-1M-sized synthetic archive (6,040 users, as the real
    one) on 127.0.0.1; yields (url, sha256, list of requested paths)."""
    root = tmp_path_factory.mktemp("www")
    archive = ml1m_zip(make_world(users=6040, seed=1))
    (root / "ml-1m.zip").write_bytes(archive)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ml-1m.zip", hashlib.sha256(archive).hexdigest(), requests
    httpd.shutdown()
    httpd.server_close()


def run_tier(tmp_path, url, sha256, succeed=True) -> dict:
    """The tier in a child session: what it ran (conftest.child_pytest)."""
    env = {k: v for k, v in os.environ.items() if k != "DIN_REQUIRE_DATA"}
    env |= dict(DIN_DATA_DIR=str(tmp_path / "no-data"), DIN_CACHE_DIR=str(tmp_path / "cache"),
                DIN_TEST_ML1M_URL=url, DIN_TEST_ML1M_SHA256=sha256, PYTHONPATH=str(ROOT))
    return child_pytest(TIER, env, 600, tmp_path, succeed=succeed)


def test_real_data_tier_downloads_verifies_and_reuses_the_archive(grouplens, tmp_path):
    url, sha256, requests = grouplens
    first = run_tier(tmp_path, url, sha256)
    assert first["passed"] == first["tests"] == 2 and not first["skipped"], first["output"]
    assert requests == ["/ml-1m.zip"]  # fetched once for the whole session
    cache = tmp_path / "cache"
    assert {"ml-1m", "movielens-1m-seed"} <= set(os.listdir(cache))
    assert sorted(os.listdir(cache / "movielens-1m-seed")) == ["test.csv", "train.csv"]
    again = run_tier(tmp_path, url, sha256)
    assert again["passed"] == again["tests"] == 2 and not again["skipped"], again["output"]
    assert requests == ["/ml-1m.zip"]  # the cached archive and split are reused


def test_offline_each_test_fails_with_one_line_saying_how(tmp_path):
    ran = run_tier(tmp_path, "http://127.0.0.1:9/ml-1m.zip", "0" * 64, succeed=False)  # nothing listens on port 9
    assert ran["failures"] == ran["tests"] == 2 and not ran["skipped"] and not ran["passed"], ran["output"]
    assert all("not downloadable" in message and "set DIN_DATA_DIR=DIR" in message for message in ran["failed"].values())
    assert "Traceback" not in ran["output"]
