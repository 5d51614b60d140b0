"""Whether each attention unit attends: measured after every epoch, warned of once.

Two numbers per attention group (history.csv columns `attention_ratio/<group>`
and `attention_norm/<group>`):
  ratio  the mean over probe rows (with two or more real history positions) of
         the largest attention weight over the mean weight of the row's real
         positions: 1.0 when every position weighs the same (the attention
         pools), the history length when one position takes everything.
  norm   the L2 norm of the unit's dense kernels: weight decay that outweighs
         the unit's gradient walks it to zero, and the scores become one
         constant per row.
A unit has collapsed when its ratio is within COLLAPSED_RATIO of 1 or its norm
under COLLAPSED_NORM; the loop then logs one warning with what to try.
"""

from __future__ import annotations

import numpy as np

from data.schema import FeatureSchema

PROBE_ROWS = 2048  # validation rows the ratio is measured on (a fixed draw per run)
COLLAPSED_RATIO = 1e-6
COLLAPSED_NORM = 1e-20


def probe_rows(n: int, seed: int) -> np.ndarray:
    """A fixed, sorted draw of up to PROBE_ROWS row indices of a split of n rows."""
    if n <= PROBE_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, PROBE_ROWS, replace=False))


def lengths(schema: FeatureSchema, data: dict[str, np.ndarray], group: str) -> np.ndarray:
    """Each row's usable history length [N] in the attention group named `group`."""
    (found,) = [g for g in schema.attention_groups if g.name == group]
    return found.lengths(data)


def weight_ratio(weights: np.ndarray, length: np.ndarray) -> float:
    """Mean over rows with length >= 2 of max / mean of the real positions'
    weights [N, T] (positions past `length` [N] are padding); NaN without such rows."""
    weights = np.asarray(weights, np.float64)
    real = np.arange(weights.shape[1]) < np.asarray(length)[:, None]  # [N, T]
    rows = np.asarray(length) >= 2
    if not rows.any():
        return float("nan")
    real, weights = real[rows], np.where(real[rows], weights[rows], 0.0)
    mean = weights.sum(axis=1) / real.sum(axis=1)  # [N']
    top = weights.max(axis=1)
    usable = mean > 0  # a row whose every weight underflowed says nothing
    return float(np.mean(top[usable] / mean[usable])) if usable.any() else float("nan")


def measure(schema: FeatureSchema, data: dict[str, np.ndarray], weights: dict[str, np.ndarray],
            norms: dict[str, float]) -> dict[str, float]:
    """history.csv's attention columns from the probe rows' weights {group: [N, T]} and the units' norms."""
    row: dict[str, float] = {}
    for group, values in weights.items():
        row[f"attention_ratio/{group}"] = weight_ratio(values, lengths(schema, data, group))
        row[f"attention_norm/{group}"] = float(norms[group])
    return row


def collapsed(row: dict[str, float]) -> list[str]:
    """The attention groups of a history row whose unit has collapsed."""
    groups = [key.split("/", 1)[1] for key in row if key.startswith("attention_ratio/")]
    return [g for g in groups
            if abs(row[f"attention_ratio/{g}"] - 1.0) < COLLAPSED_RATIO or row[f"attention_norm/{g}"] < COLLAPSED_NORM]


def collapse_warning(groups: list[str], epoch: int) -> str:
    return (f"the attention of group(s) {', '.join(groups)} has collapsed at epoch {epoch}: every history position "
            "weighs the same (the model pools instead of attending); its weights decayed to zero. Try "
            "--attention-weight-decay 0 (the default) or --weight-decay-form decoupled")
