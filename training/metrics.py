"""Evaluation metrics on logits: AUC, log loss and GAUC."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, logits: np.ndarray) -> float:
    """ROC AUC (scikit-learn); NaN when only one class is present."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, logits))


def log_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy, computed from logits for numerical stability."""
    y = np.asarray(labels, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def gauc(users: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> float:
    """Group AUC: per-user AUC weighted by the user's sample count (the DIN paper's eq. 1).

    Only users with both labels present count; NaN when there is none (e.g.
    one sample per user, as in the tutorial's split). Vectorised: each user's
    AUC is the Mann-Whitney statistic of midranks within the user (ties count
    one half, as scikit-learn's roc_auc_score does), with no loop over users.
    """
    user = pd.factorize(np.asarray(users))[0]
    labels = np.asarray(labels, dtype=np.float64)
    if not len(user):
        return float("nan")
    key = _user_score_key(user, np.asarray(logits))
    order = np.argsort(key)  # by user, then score; equal keys are ties
    u, k, y = user[order], key[order], labels[order]
    start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])  # each user's first sorted row
    rank = np.arange(len(u)) - np.repeat(start, np.diff(np.r_[start, len(u)])) + 1.0  # 1-based within the user
    tie = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])  # runs of equal (user, score)
    size = np.diff(np.r_[tie, len(u)])
    midrank = np.repeat(np.add.reduceat(rank, tie) / size, size)
    n = np.bincount(u)
    positives = np.bincount(u, weights=y, minlength=len(n))
    negatives = n - positives
    rank_sum = np.bincount(u, weights=midrank * y, minlength=len(n))
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return float("nan")
    auc_u = (rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (positives[both] * negatives[both])
    return float(np.sum(n[both] * auc_u) / np.sum(n[both]))


def _user_score_key(user: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """One sortable key per row ordering by user, then score, equal exactly for
    ties: float32 scores (the backends' logits) and the user in one uint64, so a
    single sort does it; other scores go through their rank (one more sort)."""
    logits = logits + 0.0  # -0.0 == 0.0: one tie
    if logits.dtype != np.float32 and np.array_equal(logits.astype(np.float32), logits):
        logits = logits.astype(np.float32)  # exactly float32 values: the fast key
    if logits.dtype == np.float32 and not np.isnan(logits).any():
        bits = logits.view(np.uint32)
        # IEEE order as unsigned order: flip every bit of a negative, the sign bit of a positive.
        ordered = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.uint64)
        return (user.astype(np.uint64) << np.uint64(32)) | ordered
    _, score = np.unique(logits.astype(np.float64), return_inverse=True)  # dense ranks: ties share one
    return user.astype(np.int64) * (int(score.max(initial=0)) + 1) + score.astype(np.int64)


def gauc_undefined(users: np.ndarray, labels: np.ndarray) -> str:
    """Why GAUC is NaN for these rows (only users with both labels count)."""
    if not len(labels):
        return "no rows"
    user = pd.factorize(np.asarray(users))[0]
    if np.bincount(user).max() == 1:
        return "every user has one row: GAUC needs users with several"
    return "no user has rows of both labels"


def summary(found: dict[str, float], users: np.ndarray, labels: np.ndarray) -> str:
    """'AUC a  GAUC g  logloss l', saying why where a figure is undefined."""
    auc_text = f"{found['auc']:.6f}" if np.isfinite(found["auc"]) else "n/a (the labels are of one class)"
    gauc_text = f"{found['gauc']:.6f}" if np.isfinite(found["gauc"]) else f"n/a ({gauc_undefined(users, labels)})"
    return f"AUC {auc_text}  GAUC {gauc_text}  logloss {found['logloss']:.6f}"


def evaluate(users: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    return {"auc": auc(labels, logits), "logloss": log_loss(labels, logits), "gauc": gauc(users, labels, logits)}
