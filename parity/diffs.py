"""One row of a parity comparison: a tensor's name, its largest absolute and
relative difference between the frameworks, and the tolerance it is held
to (per dtype and kind of quantity); and the table of such rows."""

from __future__ import annotations

import dataclasses

import numpy as np

# Max abs difference allowed, per dtype and kind of quantity. AUC gets 1e-6 in
# both: rows with identical inputs but different labels tie exactly in one
# framework and differ by an ulp in the other, which moves AUC by
# 1 / (positives * negatives) per such pair (seen: 3.6e-7 on ml-latest-small).
# Weights after optimiser steps: float64 at 1e-9 absolute; float32 at 1e-6 plus
# 2e-5 of the tensor's largest value (float32 rounding, grown over 100 steps,
# stays below: 9e-6 on running variances of ~1.5). Dropping weight decay from
# one layer, or flipping one BatchNorm's momentum, is over it
# (tests/parity/test_parity.py: the mutation tests).
TOLERANCES = {
    "float64": {"forward": 1e-12, "forward_rtol": 0.0, "stats": 1e-12, "grad": 1e-10, "steps": 1e-9, "steps_rtol": 0.0,
                "auc": 1e-6},
    # forward_rtol: float32 values far from 1 (a sum over 100 history positions reaches 20) round at their own scale.
    "float32": {"forward": 1e-5, "forward_rtol": 2e-6, "stats": 1e-5, "grad": 1e-5, "steps": 1e-6, "steps_rtol": 2e-5,
                "auc": 1e-6},
}

@dataclasses.dataclass(frozen=True)
class Diff:
    name: str
    max_abs: float
    max_rel: float  # max abs difference / max abs reference value
    tolerance: float  # allowed max abs difference: tolerance + rtol * max abs reference value
    rtol: float = 0.0
    scale: float = 0.0  # max abs reference value

    @property
    def allowed(self) -> float:
        return self.tolerance + self.rtol * self.scale

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.allowed


def diff(name: str, torch_value, jax_value, tolerance: float, rtol: float = 0.0) -> Diff:
    a = np.asarray(torch_value.detach().cpu() if hasattr(torch_value, "detach") else torch_value, dtype=np.float64)
    b = np.asarray(jax_value, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{name}: torch shape {a.shape} != jax shape {b.shape}")
    if a.size == 0:
        return Diff(name, 0.0, 0.0, tolerance, rtol)
    finite = np.isfinite(a) | np.isfinite(b)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)) or not np.array_equal(a[~finite], b[~finite]):
        return Diff(name, float("inf"), float("inf"), tolerance, rtol)
    max_abs = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))
    scale = float(np.max(np.abs(a[finite]), initial=0.0))
    return Diff(name, max_abs, max_abs / max(scale, 1e-300), tolerance, rtol, scale)


def format_table(rows: list[Diff]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'output':<{width}}  {'max abs diff':>12}  {'max rel diff':>12}  {'tolerance':>9}  ok"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.max_abs:>12.3e}  {r.max_rel:>12.3e}  {r.allowed:>9.1e}  {'yes' if r.ok else 'NO'}")
    return "\n".join(lines)
