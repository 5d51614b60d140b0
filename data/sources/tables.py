"""One parser for the raw GroupLens files (data/sources/grouplens.py reads them
with it): decoding with line numbers, fields split and counted per line,
columns found by their header names, and integers and numbers checked, every
error a DataError naming the file, its physical line and the column."""

from __future__ import annotations

import csv
import io
import os
import re

import numpy as np
import pandas as pd

from core.errors import DataError


def read_table(path: str, columns: dict[str, str], separator: str, encoding: str, header: bool) -> pd.DataFrame:
    """All fields as strings, renamed by `columns` (the file's name -> ours); every
    line's field count checked.

    With a header, columns are found by their names in it, in any order (extra
    columns are ignored); without one, they are taken in `columns`' order.
    `frame.attrs` keeps the path and each row's physical line number (blank
    lines are skipped) for error messages.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    text = decode(raw, path, encoding, 1)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    frame = parse(text, path, columns, separator, header)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    return frame


def decode(raw: bytes, path: str, encoding: str, first_line: int) -> str:
    """Text with one line end (a file saved with CRLF or CR reads exactly as with
    LF) and no UTF-8 byte-order mark; first_line: the number of raw's first line."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = first_line + raw[: error.start].count(b"\n")
        raise DataError(f"{path}, line {line}: not valid {encoding} text") from None
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse(
    text: str, path: str, columns: dict[str, str], separator: str, header: bool, first_line: int = 1,
    file_names: list[str] | None = None,
) -> pd.DataFrame:
    """read_table's parse of decoded text whose first line is the file's line
    `first_line`; file_names: the columns a header named, for a part of the file
    after its header."""
    if separator == "::":
        # A one-character separator lets pandas use its fast C parser; '\t'
        # never occurs in MovieLens-1M fields.
        text, separator = text.replace("::", "\t"), "\t"
    names = list(columns)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=separator, dtype=str, keep_default_na=False, na_filter=False,
            header=0 if header else None,
            # Header-less files get a spare column: a line with too many fields fills it.
            names=file_names if file_names else None if header else names + ["__extra__"],
            quoting=csv.QUOTE_MINIMAL if header or file_names else csv.QUOTE_NONE,
        )
    except pd.errors.ParserError as error:  # too many fields in a CSV line; pandas names the (physical) line
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        line = int(found[2]) + first_line - 1 if found else 0
        why = f"line {line}: {found[3]} fields, expected {found[1]}" if found else " ".join(str(error).split())
        raise DataError(f"{path}, {why}" if found else f"{path}: {why}") from None
    lines = nonblank_lines(text, separator)[1 if header else 0 :] + first_line - 1  # [rows]: each row's physical line number
    if header or file_names:
        found = [str(name).strip() for name in frame.columns]
        missing = [name for name in names if name not in found]
        if missing:
            raise DataError(
                f"{path}: the header {','.join(found)!r} lacks {missing}; expected the columns {names} "
                "(in any order), as GroupLens releases name them"
            )
        frame = frame.set_axis(found, axis=1)[names]
    else:
        extra = np.flatnonzero(frame["__extra__"].to_numpy() != "")
        if len(extra):
            raise DataError(f"{path}, line {int(lines[extra[0]])}: more than {len(names)} fields")
        frame = frame[names]
    frame = frame.set_axis([columns[name] for name in names], axis=1)
    frame.attrs.update(path=path, lines=lines[: len(frame)], names={ours: theirs for theirs, ours in columns.items()})
    return frame


def nonblank_lines(text: str, separator: str = ",") -> np.ndarray:
    """Physical numbers of the lines pandas reads (it skips blank lines, and lines
    of spaces and tabs unless the separator is one of them)."""
    blank, line, position = [], 1, 0
    spaces = " \t".replace(separator, "")
    for match in re.finditer(f"^[{spaces}]*$", text, flags=re.MULTILINE):  # few: usually the end's empty line
        line += text.count("\n", position, match.start())
        position = match.start()
        blank.append(line - 1)
    return np.delete(np.arange(1, text.count("\n") + 2), blank)


def where(frame: pd.DataFrame, row: int, column: str | None = None) -> str:
    """'path, line N[, column C]' of a row of a frame read by read_table."""
    place = f"{frame.attrs['path']}, line {int(frame.attrs['lines'][row])}"
    return place if column is None else f"{place}, column {frame.attrs['names'].get(column, column)!r}"


def integers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
    bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where(frame, i, column)}: not an integer (value {frame[column].iloc[i]!r})")
    return values.astype(np.int64)


def numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where(frame, i, column)}: not a number (value {frame[column].iloc[i]!r})")
    return values
