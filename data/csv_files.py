"""CSV files read the same way for training (dataset files, the tutorial's
split) and scoring (predict.py): every field a string, each data row's
physical line number kept for messages; a BOM, blank lines, CRLF and quoted
fields read alike, and a header naming a column twice, a file in another
separator, text that is not UTF-8 or a row of the wrong field count is one
line naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from typing import Iterator

import numpy as np
import pandas as pd

from core.errors import DataError


def read_csv(path: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV file (optionally .gz) as strings, and each data row's physical line number."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:  # e.g. a truncated .gz
        raise DataError(f"{path}: unreadable ({error})") from None
    return parse_csv(data, path)


def read_csv_chunks(path: str, rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """read_csv a piece at a time: frames of at most `rows` data rows (strings),
    with their physical line numbers, the same checks as read_csv's; memory is
    bounded by the piece, not the file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header, lines, chunk = None, [], []
            try:
                for row in reader:
                    if not row:
                        continue  # a blank line
                    if header is None:
                        header = _header([name.strip() for name in row], path, reader.line_num)
                        continue
                    if len(row) != len(header):
                        raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
                    chunk.append(row)
                    lines.append(reader.line_num)
                    if len(chunk) == rows:
                        yield pd.DataFrame(chunk, columns=header, dtype=object), np.asarray(lines, np.int64)
                        chunk, lines = [], []
            except csv.Error as error:
                raise DataError(f"{path}, line {reader.line_num}: {error}") from None
            except UnicodeDecodeError:  # decoded a block ahead of the reader: find the line itself
                raise DataError(f"{path}, line {_first_bad_line(path, opener)}: not valid UTF-8 text; save the file "
                                "as UTF-8") from None
    except (OSError, EOFError) as error:  # e.g. a truncated .gz
        raise DataError(f"{path}: unreadable ({error})") from None
    if header is None:
        raise DataError(f"{path}: empty file, expected a header line")
    if chunk or not lines:
        yield pd.DataFrame(chunk, columns=header, dtype=object), np.asarray(lines, np.int64)


def _first_bad_line(path: str, opener) -> int:
    """The number of the first line of `path` that is not valid UTF-8 (a line
    ends at b'\\n', which no multi-byte character contains)."""
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _header(header: list[str], path: str, line: int) -> list[str]:
    """The header's column names; one named twice, or a header of one field
    that another separator splits (';', a tab), is refused."""
    if len(header) == 1:
        other = next((sep for sep in (";", "\t", "|") if sep in header[0]), None)
        if other:
            raise DataError(f"{path}, line {line}: the header {header[0]!r} is one field: the file looks "
                            f"{other!r}-separated; save it with commas between fields")
    seen: dict[str, int] = {}
    for column, name in enumerate(header, 1):
        if name in seen:
            raise DataError(f"{path}, line {line}: the header names column {name!r} twice (fields "
                            f"{seen[name]} and {column}); rename or drop one")
        seen[name] = column
    return header


def parse_csv(data: bytes, path: str, header: list[str] | None = None, first_line: int = 1
              ) -> tuple[pd.DataFrame, np.ndarray]:
    """CSV bytes as strings, and each data row's physical line number. `data` is
    a whole file (its first row the header), or with `header` given a piece of
    one after its header (a byte range that starts at a line's start and ends
    after one) whose first line is the file's line `first_line`."""
    try:
        text = data.decode("utf-8-sig" if header is None else "utf-8")  # a byte-order mark is no part of the header
    except UnicodeDecodeError as error:
        line = first_line + data[: error.start].count(b"\n")
        raise DataError(f"{path}, line {line}: not valid UTF-8 text; save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    offset = first_line - 1
    try:
        rows = [(offset + reader.line_num, row) for row in reader if row]  # blank lines skipped, line numbers kept
    except csv.Error as error:
        raise DataError(f"{path}, line {offset + reader.line_num}: {error}") from None
    if header is None:
        if not rows:
            raise DataError(f"{path}: empty file, expected a header line")
        header = _header([name.strip() for name in rows[0][1]], path, rows[0][0])
        rows = rows[1:]
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
    frame = pd.DataFrame([row for _, row in rows], columns=header, dtype=object)
    return frame, np.asarray([line for line, _ in rows], dtype=np.int64)
