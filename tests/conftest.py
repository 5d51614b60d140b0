"""Shared fixtures: the real MovieLens data (required, never skipped) and a warm XLA cache."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Compilations persist across test processes of one run (and across runs locally).
os.environ.setdefault("DIN_XLA_CACHE", str(ROOT / ".cache" / "xla"))
# Built raw datasets and downloads stay inside the checkout (ignored by git).
os.environ.setdefault("DIN_CACHE_DIR", str(ROOT / ".cache" / "din"))


# tests/multidevice needs 8 devices set up before JAX starts: tests/test_multidevice.py
# runs it in a child process with XLA_FLAGS; the main session leaves it alone.
collect_ignore = [] if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") else ["multidevice"]


def _data_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("DIN_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def seed_data_dir() -> str:
    """The tutorial's MovieLens-1M split; its absence fails the test loudly."""
    path = _data_root() / "movielens-1m-seed"
    if not (path / "train.csv").is_file() or not (path / "test.csv").is_file():
        pytest.fail(
            f"MovieLens seed data not found at {path}: set DIN_DATA_DIR to the folder holding "
            "movielens-1m-seed/ (train.csv, test.csv)",
            pytrace=False,
        )
    return str(path)


@pytest.fixture(scope="session")
def seed_splits(seed_data_dir):
    from data.config import DINConfig
    from data.movielens import load_splits

    return load_splits(seed_data_dir, DINConfig())


@pytest.fixture(autouse=True, scope="session")
def _jax_cache():
    try:
        from din_jax.train import enable_compilation_cache
    except ImportError:
        return
    enable_compilation_cache()
