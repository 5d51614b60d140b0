"""Every kind of data folder, behind one interface (base.Source), in one registry.

| source | module | the folder holds |
| --- | --- | --- |
| dataset file | dataset_file.py | dataset.toml (or --dataset FILE) and the CSVs it names |
| tutorial | tutorial.py | train.csv + test.csv (the tutorial's MovieLens-1M split) |
| MovieLens | movielens.py + a protocol: sequential.py, seed_protocol.py, paper_protocol.py | ratings.dat + users.dat + movies.dat, or ratings.csv + movies.csv |
| Amazon | amazon.py | reviews_<Category>_5.json[.gz] + meta_<Category>.json[.gz] |

`history.py` holds what the event-log sources share (runs of equal keys,
histories of strictly earlier events). Nothing outside this registry asks
which source a folder is: it asks the source.
"""

from __future__ import annotations

import os

from core.config import DINConfig
from core.errors import DataError
from data.sources.amazon import Amazon
from data.sources.base import Source
from data.sources.dataset_file import DatasetFile
from data.sources.movielens import MovieLens
from data.sources.tutorial import Tutorial

# In the order they are tried: a dataset file wins over whatever else the folder holds.
SOURCES: tuple[Source, ...] = (DatasetFile(), Tutorial(), MovieLens(), Amazon())


def detect(data_dir: str, config: DINConfig) -> Source:
    """The source of a data folder, recognised from its files (a DataError where
    the run's options ask it for what it does not build)."""
    if not os.path.isdir(data_dir):
        raise DataError(f"--data {data_dir}: no such folder")
    for source in SOURCES:
        if source.detect(data_dir, config):
            source.check(data_dir, config)
            return source
    raise DataError(
        f"{data_dir}: no data found: expected dataset.toml naming your CSVs (or pass --dataset FILE), "
        "train.csv + test.csv (the tutorial's split), ratings.dat + users.dat + movies.dat (MovieLens-1M), "
        "ratings.csv + movies.csv (ml-latest-small, ml-20m, ml-25m) or reviews_<Category>_5.json.gz + "
        "meta_<Category>.json.gz (Amazon, 2014 release)"
    )


__all__ = ["SOURCES", "Source", "detect"]
