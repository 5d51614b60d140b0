"""Row scales of the paper's mini-batch aware L2 regularisation (framework-free).

Zhou et al. (KDD 2018), eq. 4-5: the L2 norm of an embedding table W is
approximated over mini-batch m by

    L2(W) ~= sum_j alpha_mj / n_j * ||w_j||^2                          (eq. 4)

where alpha_mj = 1 when some example of batch m holds id j, and n_j is the
number of occurrences of id j in the whole training set. Adding lambda / 2
times it to the loss gives the paper's update (eq. 5; docs/model.md)

    w_j <- w_j - lr * (dL/dw_j + lambda * alpha_mj / n_j * w_j),

so only the rows present in the batch are regularised, rare ids more
strongly. Both backends add that term (din_*/train.py, MiniBatchAwareL2);
this module computes lambda / n_j per table row from the training split.
"""

from __future__ import annotations

import numpy as np

from data.schema import FeatureSchema


def occurrences(schema: FeatureSchema, train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """n_j for every row j of every table: how often id j occurs in the training
    split, over all the columns looked up in that table (padding 0 not counted)."""
    counts = {}
    for feature in schema.tables:
        n = np.zeros(feature.vocab_size, dtype=np.int64)
        for column in schema.columns_of(feature.name):
            np.add.at(n, np.asarray(train[column]).ravel(), 1)
        n[0] = 0
        counts[feature.name] = n
    return counts


def mba_scales(schema: FeatureSchema, train: dict[str, np.ndarray], lam: float) -> dict[str, np.ndarray]:
    """lambda / n_j per table row [V] (0 where n_j = 0: such a row never occurs in a training batch)."""
    scales = {}
    for table, n in occurrences(schema, train).items():
        scales[table] = np.where(n > 0, lam / np.maximum(n, 1), 0.0)
    return scales
