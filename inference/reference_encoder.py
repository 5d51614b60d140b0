"""Raw rows -> an exported artifact's inputs, with numpy and the standard
library only: the reference a serving system reimplements or calls. Every
export carries this file as `encode.py`, beside `encoders.json` (the
preprocessing as data) and `manifest.json` (the inputs' order and dtypes).

    import csv, json
    from encode import Encoder
    encoder = Encoder.load("serving/small")           # the export folder
    rows = list(csv.DictReader(open("rows.csv")))      # raw values, as predict.py reads them
    inputs = encoder(rows)                             # [array, ...] in the manifest's order

It reads a row exactly as predict.py does (data/rows.py, data/encoders.py;
tests/test_export.py checks each artifact fed by it against predict.py):
  numeric      empty -> the training mean; then the run's preprocessing: the
               uniform quantile transform (scikit-learn's interpolation,
               both directions averaged), a z-score, or nothing
  categorical  stripped text, an integer written as a float ('2571.0') read
               as the integer; the sorted vocabulary numbered 1..n, anything
               else (empty included) n + 1, the unknown id
  sequence     ids joined by the column's separator, each read as above; the
               most recent max_len kept (the end of an oldest-first list, the
               start of a latest-first one), right-padded with 0
This reference does not check its input (predict.py refuses bad rows in one
line); give it rows predict.py accepts.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

_INTEGRAL = re.compile(r"[+-]?\d+\.0*")  # an integer written as a float: '2571.0'


def read_id(text: str) -> str:
    """One id as training and scoring read it: stripped, an integral float as its integer."""
    text = text.strip()
    return text.split(".")[0].lstrip("+") if _INTEGRAL.fullmatch(text) else text


class Encoder:
    """encoders.json (a run's preprocessing) + manifest.json (the inputs' order)."""

    def __init__(self, encoders: dict, inputs: list[dict]):
        self.encoders, self.inputs = encoders, inputs
        self.terms = {name: {term: k + 1 for k, term in enumerate(spec["terms"])}
                      for kind in ("categorical", "sequence") for name, spec in encoders[kind].items()}

    @classmethod
    def load(cls, folder: str) -> "Encoder":
        with open(os.path.join(folder, "encoders.json"), encoding="utf-8") as f:
            encoders = json.load(f)
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        return cls(encoders, manifest["inputs"])

    def __call__(self, rows: list[dict[str, str]]) -> list[np.ndarray]:
        """Raw rows (column -> text) -> the artifact's inputs, in order."""
        out = []
        for spec in self.inputs:
            name = spec["name"]
            values = [str(row.get(name, "") or "") for row in rows]
            if name in self.encoders["numeric"]:
                out.append(self.numeric(self.encoders["numeric"][name], values))
            elif name in self.encoders["categorical"]:
                out.append(self.ids(name, [read_id(v) for v in values]))
            else:
                out.append(self.sequence(name, self.encoders["sequence"][name], values))
        return out

    def ids(self, name: str, terms: list[str]) -> np.ndarray:
        vocabulary = self.terms[name]
        unknown = len(vocabulary) + 1
        return np.asarray([vocabulary.get(term, unknown) for term in terms], np.int32)

    def sequence(self, name: str, spec: dict, values: list[str]) -> np.ndarray:
        max_len, sep = spec["max_len"], spec.get("sep", "|")
        out = np.zeros((len(values), max_len), np.int32)
        for row, value in enumerate(values):
            terms = [read_id(term) for term in value.strip().split(sep)] if value.strip() else []
            kept = terms[:max_len] if spec.get("order", "oldest-first") == "latest-first" else terms[-max_len:]
            out[row, : len(kept)] = self.ids(name, kept)
        return out

    @staticmethod
    def numeric(spec: dict, values: list[str]) -> np.ndarray:
        x = np.asarray([float(v) if v.strip() else np.nan for v in values], np.float64)
        x = np.where(np.isnan(x), spec["mean"], x)
        kind = spec.get("kind", "quantile")
        if kind == "standard":
            return ((x - spec["mean"]) / spec["std"]).astype(np.float32)
        if kind == "none":
            return x.astype(np.float32)
        quantiles, references = np.asarray(spec["quantiles"]), np.asarray(spec["references"])
        # Interpolated in both directions and averaged (repeated quantiles), the ends exact.
        y = 0.5 * (np.interp(x, quantiles, references) - np.interp(-x, -quantiles[::-1], -references[::-1]))
        y[x == quantiles[-1]] = 1.0
        y[x == quantiles[0]] = 0.0
        return y.astype(np.float32)
