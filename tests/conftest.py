"""Shared fixtures: synthetic data in every layout, the real-data tiers, a warm XLA cache.

Three tiers of data:
  synthetic    generated here (tests/synthetic_movielens.py): every unit,
               parity and end-to-end test that needs no real data.
  MovieLens-1M the tutorial's split from $DIN_DATA_DIR/movielens-1m-seed (or
               ../shared/data/...); when absent, raw MovieLens-1M is
               downloaded (verified, cached in .cache/) and the split rebuilt
               by the `seed` protocol; offline, each such test fails with one
               line saying how to provide the data.
  samples      folders with no verified public download (ml-latest-small):
               used when present, else skipped with the reason.
With DIN_REQUIRE_DATA=1 (CI) nothing is downloaded and nothing skips: a
missing folder fails.
"""

from __future__ import annotations

import functools
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The tests' shapes are tiny, so XLA's compile time, not run time, is the suite's
# cost: tests compile with no LLVM optimisation (-O0) and XLA:CPU's elemental
# emitters, about 40% less compile time than -O1 and a third of the default's.
# The same HLO runs; only its machine code differs, in the last bits, far below
# every tolerance but one: 100 float32 Adam steps against torch amplify rounding
# to 1e-3 at -O0, so that comparison compiles its step at -O1
# (tests/parity/test_parity.py: optimised). Child processes inherit the flags,
# and torch's one thread per worker (two workers share two cores; torch's
# threads collapse under competition).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
os.environ.setdefault("OMP_NUM_THREADS", "1")


# Tests marked `optimised` compare two different compiled programs bit for bit
# (the streamed and the device-resident input paths), a property of optimised
# machine code: tests/test_optimised.py runs them in a child process at -O1.
OPTIMISED = os.environ.get("DIN_TEST_OPTIMISED") == "1"
# Their one training configuration (with the synthetic ML-1M folder): the -O1
# child compiles each of its programs once for all of them.
OPTIMISED_SETTINGS = dict(protocol="sequential", max_hist=6, batch_size=128, steps_per_call=3)


# The child-process tests, longest first (each takes one to four minutes): run
# first, they are shared out between the workers while the short tests fill
# in around them, instead of one starting last and leaving a worker idle.
# (pyproject.toml: --maxschedchunk 1 hands out tests one at a time.)
LONGEST_FIRST = ("tests/test_parity_float64.py", "tests/test_multidevice.py", "tests/test_resume.py",
                 "tests/test_optimised.py", "tests/test_multihost.py")


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if ("optimised" in item.keywords) != OPTIMISED]
    if marked:
        config.hook.pytest_deselected(items=marked)
        items[:] = [item for item in items if item not in marked]
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


def child_xla_flags(devices: int | None = None) -> str:
    """XLA_FLAGS for a child process: the session's, with `devices` CPU devices if given."""
    flags = os.environ["XLA_FLAGS"]
    return f"{flags} --xla_force_host_platform_device_count={devices}" if devices else flags


def child_pytest(args: list[str], env: dict, timeout: int, tmp_path: pathlib.Path, succeed: bool = True) -> dict:
    """Runs pytest in a child process with a JUnit report; returns what it ran:
    {'tests', 'passed', 'failures', 'skipped': {test: reason}, 'failed': {test: message}, 'output'}
    (failures counts errors too). succeed: the child must exit 0."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ElementTree

    report = tmp_path / "child-report.xml"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                             *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout[-8000:] + result.stderr[-4000:]
    assert result.returncode == 0 or not succeed, f"child pytest failed:\n{output}"
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    skipped = {f"{c.get('classname')}::{c.get('name')}": c.find("skipped").get("message", "")
               for c in cases if c.find("skipped") is not None}
    failed = {f"{c.get('classname')}::{c.get('name')}": (c.find("failure") or c.find("error")).get("message", "")
              for c in cases if c.find("failure") is not None or c.find("error") is not None}
    return {"tests": len(cases), "passed": len(cases) - len(skipped) - len(failed), "failures": len(failed),
            "skipped": skipped, "failed": failed, "output": output}


# Every compilation persists (not only those over a second), for the child processes.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Compilations persist across test processes of one run (and across runs locally).
os.environ.setdefault("DIN_XLA_CACHE", str(ROOT / ".cache" / "xla"))
# Built raw datasets and downloads stay inside the checkout (ignored by git).
os.environ.setdefault("DIN_CACHE_DIR", str(ROOT / ".cache" / "din"))

REQUIRE_DATA = os.environ.get("DIN_REQUIRE_DATA") == "1"
SYNTHETIC_USERS = 3000  # the tutorial layout: 2,160 training rows, 240 validation, 600 test


# tests/multidevice needs 8 devices set up before JAX starts: tests/test_multidevice.py
# runs it in a child process with XLA_FLAGS; the main session leaves it alone.
collect_ignore = [] if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") else ["multidevice"]


def data_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DIN_DATA_DIR", ROOT.parent / "shared" / "data"))


def ml1m_release():
    """GroupLens' MovieLens-1M; a test may stand a local server in for it."""
    from data.download import ML_1M, Release

    url, sha256 = os.environ.get("DIN_TEST_ML1M_URL"), os.environ.get("DIN_TEST_ML1M_SHA256")
    return Release(ML_1M.name, url, sha256, ML_1M.folder) if url and sha256 else ML_1M


def provide_seed_split() -> str:
    """The tutorial's MovieLens-1M split: the data folder's, or rebuilt from a verified download."""
    from core.errors import DataError
    from data.download import DownloadError, default_cache_dir, fetch
    from data.sources.seed_protocol import write_tutorial_split

    path = data_root() / "movielens-1m-seed"
    if (path / "train.csv").is_file() and (path / "test.csv").is_file():
        return str(path)
    how = "set DIN_DATA_DIR=DIR, DIR holding movielens-1m-seed/ (train.csv, test.csv)"
    if REQUIRE_DATA:
        pytest.fail(f"MovieLens-1M seed split not found at {path} (DIN_REQUIRE_DATA=1: no download): {how}", pytrace=False)
    rebuilt = pathlib.Path(default_cache_dir()) / "movielens-1m-seed"
    if not rebuilt.is_dir():
        problem = None
        try:
            raw = fetch(ml1m_release(), progress=False)
        except DownloadError as error:
            problem = f"not downloadable ({error.reason})"
        except DataError as error:  # a download that fails its checksum
            problem = f"not downloadable: {error}"
        if problem:  # failed outside the except block: one line, no chained traceback
            pytest.fail(f"MovieLens-1M not found at {path} and {problem}: {how}, or run with network access",
                        pytrace=False)
        write_tutorial_split(raw, str(rebuilt), seed=0)
    return str(rebuilt)


def sample_dir(name: str) -> str:
    """A sample folder of ../shared/data (no public download): skipped when absent, failed under CI."""
    path = data_root() / name
    if path.is_dir():
        return str(path)
    message = f"sample data {name}/ not found under {data_root()} (set DIN_DATA_DIR)"
    if REQUIRE_DATA:
        pytest.fail(message + "; DIN_REQUIRE_DATA=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def seed_data_dir() -> str:
    """The MovieLens-1M tier: the tutorial's real split."""
    return provide_seed_split()


@pytest.fixture(scope="session")
def seed_splits(seed_data_dir):
    from core.config import DINConfig
    from data.sources.tutorial import load_splits

    return load_splits(seed_data_dir, DINConfig())


@pytest.fixture(scope="session")
def world():
    from synthetic_movielens import make_world

    return make_world(users=SYNTHETIC_USERS)


@pytest.fixture(scope="session")
def tutorial_dir(world, tmp_path_factory) -> str:
    """A synthetic folder in the tutorial's layout (train.csv, test.csv)."""
    from synthetic_movielens import write_tutorial

    return write_tutorial(world, str(tmp_path_factory.mktemp("synthetic") / "tutorial"))


@pytest.fixture(scope="session")
def tutorial_splits(tutorial_dir):
    from core.config import DINConfig
    from data.sources.tutorial import load_splits

    return load_splits(tutorial_dir, DINConfig())


@pytest.fixture(scope="session")
def csv_release_dir(world, tmp_path_factory) -> str:
    """A synthetic raw CSV release (ml-latest-small's layout)."""
    from synthetic_movielens import write_csv_release

    return write_csv_release(world, str(tmp_path_factory.mktemp("synthetic") / "csv-release"))


@pytest.fixture(scope="session")
def ml1m_dir(world, tmp_path_factory) -> str:
    """A synthetic raw MovieLens-1M folder."""
    from synthetic_movielens import write_ml1m

    return write_ml1m(world, str(tmp_path_factory.mktemp("synthetic") / "ml-1m"))


@pytest.fixture(scope="session")
def amazon_dir(tmp_path_factory) -> str:
    """A synthetic Amazon category (reviews + meta)."""
    from synthetic_amazon import make_reviews, write_amazon

    reviews = make_reviews(users=300, items=400, reviews=3000, seed=5)
    # Items 0-379 have meta: reviews of the others are dropped, as the authors drop them.
    return write_amazon(str(tmp_path_factory.mktemp("amazon")), reviews, items=400, with_meta=range(380))


@functools.cache
def shipped_default(data_dir: str):
    """(the config a run on `data_dir` trains with when no flag is given, the
    JAX backend's, resolved as train.py resolves it; its splits)."""
    from core.config import DINConfig
    from data.datasets import load_splits
    from training.resolve import resolve

    return resolve("jax", data_dir, DINConfig(), {}, lambda config: load_splits(data_dir, config))


def train_run(data_dir: str, out: pathlib.Path, *flags: str) -> str:
    import train

    code = train.main(["--backend", "torch", "--data", data_dir, "--epochs", "1", "--batch-size", "256",
                       "--out", str(out), "--no-progress", *flags])
    assert code == 0
    return str(out)


@pytest.fixture(scope="session")
def tutorial_run(tutorial_dir, tmp_path_factory) -> str:
    """A finished torch run (one epoch) on the synthetic tutorial split, made by train.py."""
    return train_run(tutorial_dir, tmp_path_factory.mktemp("runs") / "tutorial-torch")


@pytest.fixture(scope="session")
def seed_run(seed_data_dir, tmp_path_factory) -> str:
    """A finished torch run (one epoch, seed 3) on the real MovieLens-1M split, made by train.py."""
    return train_run(seed_data_dir, tmp_path_factory.mktemp("runs") / "seed-torch", "--seed", "3")


@pytest.fixture(autouse=True, scope="session")
def _jax_cache():
    try:
        from din_jax.settings import enable_compilation_cache
    except ImportError:
        return
    enable_compilation_cache()
