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
    """Group AUC: per-user AUC weighted by the user's sample count.

    Only users with both labels present count; NaN when there is none (e.g.
    one sample per user, as in the tutorial's split).
    """
    frame = pd.DataFrame({"user": users, "label": labels, "logit": logits})
    total, weight = 0.0, 0
    for _, group in frame.groupby("user", sort=False):
        if group["label"].nunique() == 2:
            total += len(group) * roc_auc_score(group["label"], group["logit"])
            weight += len(group)
    return total / weight if weight else float("nan")


def evaluate(users: np.ndarray, labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    return {"auc": auc(labels, logits), "logloss": log_loss(labels, logits), "gauc": gauc(users, labels, logits)}
