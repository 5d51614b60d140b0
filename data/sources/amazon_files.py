"""The Amazon product data's two files (2014 release, McAuley et al.):
`reviews_<Category>_5.json[.gz]`, JSON lines read by regular expressions at
C speed (line by line as JSON where they do not match, naming the bad line),
and `meta_<Category>.json[.gz]`, one Python dict literal a line, parsed with
`ast.literal_eval` (never `eval`) for the reviewed items only.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re

import numpy as np
import pandas as pd

from core.errors import DataError

REVIEWS = re.compile(r"^reviews_(?P<category>.+)_5\.json(\.gz)?$")
RELEASE = "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html"
ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")
RECORD = re.compile(r"^[ \t]*\{", re.MULTILINE)
REVIEW_FIELDS = {  # key -> its value, in a JSON line of the reviews file
    "reviewerID": re.compile(r'"reviewerID"\s*:\s*"([^"\\]*)"'),
    "asin": re.compile(r'"asin"\s*:\s*"([^"\\]*)"'),
    "unixReviewTime": re.compile(r'"unixReviewTime"\s*:\s*(-?\d+)'),
}



def _reviews_file(folder: str) -> str | None:
    if not os.path.isdir(folder):
        return None
    names = sorted(name for name in os.listdir(folder) if REVIEWS.match(name))
    return os.path.join(folder, names[0]) if names else None


def detect(folder: str) -> bool:
    return _reviews_file(folder) is not None


def find_files(folder: str) -> tuple[str, str]:
    """(reviews, meta) paths of the folder's category; a missing one is an error naming both."""
    reviews = _reviews_file(folder)
    category = REVIEWS.match(os.path.basename(reviews)).group("category") if reviews else "<Category>"
    metas = [os.path.join(folder, f"meta_{category}.json{ext}") for ext in (".gz", "")]
    meta = next((path for path in metas if os.path.isfile(path)), None)
    if reviews is None or meta is None:
        raise DataError(
            f"{folder}: Amazon data needs reviews_{category}_5.json.gz and meta_{category}.json.gz (either may be "
            f"uncompressed); {'meta' if reviews else 'the reviews file'} is missing. Both are published with the "
            f"2014 Amazon product data at {RELEASE}"
        )
    return reviews, meta


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def read_text(path: str) -> str:
    try:
        with _open(path) as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable ({error})") from None


def read_reviews(path: str) -> pd.DataFrame:
    """user (str), item (str), time (int64), one row per review in file order."""
    return parse_reviews(read_text(path), path)


def parse_reviews(text: str, path: str, first_line: int = 1) -> pd.DataFrame:
    """The reviews in `text` (lines of `path` from line `first_line` on), in order.

    The three fields are found by regular expressions over the whole text (C
    speed; a JSON string cannot hold an unescaped quote, so a key pattern never
    matches inside a review's text). Each must occur once per line; otherwise
    the lines are parsed one by one as JSON, which names the first bad line.
    """
    records = len(RECORD.findall(text))  # lines holding an object
    found = [pattern.findall(text) for pattern in REVIEW_FIELDS.values()]
    if any(len(values) != records for values in found):
        found = _parse_lines(path, text, first_line)
    users, items, times = found
    return pd.DataFrame({"user": np.asarray(users, dtype=str), "item": np.asarray(items, dtype=str),
                         "time": np.asarray(times, dtype=np.int64)})


def _parse_lines(path: str, text: str, first_line: int) -> list[list]:
    """The slow path: every line as JSON, the first bad one named."""
    out: list[list] = [[], [], []]
    for number, line in enumerate(text.splitlines(), first_line):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            values = [str(record["reviewerID"]), str(record["asin"]), int(record["unixReviewTime"])]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}, line {number}: not a review (a JSON object with reviewerID, asin and a "
                            "numeric unixReviewTime)") from None
        for column, value in zip(out, values):
            column.append(value)
    return out


def read_meta(path: str, items: set[str]) -> dict[str, str]:
    """asin -> category (the last element of the last category path), for the
    reviewed `items` only: other lines are skipped before they are parsed."""
    with _open(path) as f:
        return parse_meta(f, items, path)


def parse_meta(lines, items: set[str], path: str, first_line: int = 1) -> dict[str, str]:
    """read_meta over `lines` of `path`, numbered from `first_line` (a later line of an asin wins)."""
    categories: dict[str, str] = {}
    for number, line in enumerate(lines, first_line):
        found = ASIN.search(line)
        if not line.strip() or (found and found.group(1) not in items):
            continue
        try:
            record = ast.literal_eval(line)  # a Python literal, never code
            asin, paths = record["asin"], record.get("categories") or [[""]]
            categories[str(asin)] = str(paths[-1][-1]) if paths[-1] else ""
        except (ValueError, SyntaxError, KeyError, TypeError, IndexError, MemoryError, RecursionError):
            raise DataError(f"{path}, line {number}: not a meta record (a Python dict literal with 'asin' "
                            "and 'categories')") from None
    return categories
