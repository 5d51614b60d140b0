"""What the event-log sources share (MovieLens' protocols, Amazon): runs of
equal keys in sorted rows, and each row's history of strictly earlier events."""

from __future__ import annotations

import numpy as np


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """For sorted rows, the index of the first row of each row's run of equal keys."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.maximum.accumulate(np.where(change, np.arange(n), 0))


def earlier(user: np.ndarray, timestamp: np.ndarray, keep: np.ndarray, max_hist: int, *values: np.ndarray):
    """For rows sorted by (user, timestamp): each row's latest `max_hist` kept rows
    of the same user with a STRICTLY earlier timestamp, oldest first, as `values`
    at those rows [N, max_hist], right-padded with 0 (one matrix per array in values)."""
    user_start = run_starts(user)  # first row of the user's rows
    second_start = run_starts(user, timestamp)  # first row of the (user, timestamp) run
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # [N + 1]: kept rows in [0, k)
    small = np.int32 if len(user) < 2**31 - max_hist else np.int64  # [N, H] index matrices are the memory here
    end = kept_before[second_start].astype(small)  # history = kept rows [end - h, end): strictly earlier
    length = np.minimum(end - kept_before[user_start].astype(small), max_hist)  # [N]
    slots = np.arange(max_hist, dtype=small)
    index = np.clip(end[:, None] - length[:, None] + slots[None, :], 0, max(int(keep.sum()) - 1, 0))  # [N, H]
    real = slots[None, :] < length[:, None]
    out = [np.where(real, v[keep][index], 0) if keep.any() else np.zeros(real.shape, v.dtype) for v in values]
    return out[0] if len(out) == 1 else out
