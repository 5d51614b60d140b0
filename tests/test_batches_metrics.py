import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from data.batches import epoch_batches, eval_batches, iterate_batches, num_rows
from training import metrics


class TestBatches:
    def test_epoch_covers_rows_once_and_reshuffles(self):
        first = epoch_batches(10, 4, seed=0, epoch=1)
        assert [len(b) for b in first] == [4, 4, 2]
        assert sorted(np.concatenate(first).tolist()) == list(range(10))
        again = epoch_batches(10, 4, seed=0, epoch=1)
        assert all(np.array_equal(a, b) for a, b in zip(first, again))  # deterministic
        second = epoch_batches(10, 4, seed=0, epoch=2)
        assert not np.array_equal(np.concatenate(first), np.concatenate(second))

    def test_remainder_of_one_is_dropped(self):
        batches = epoch_batches(9, 4, seed=0, epoch=1)
        assert [len(b) for b in batches] == [4, 4]

    def test_eval_batches_keep_order_and_batches_of_one(self):
        assert [b.tolist() for b in eval_batches(5, 2)] == [[0, 1], [2, 3], [4]]

    def test_iterate_batches_slices_every_array(self):
        arrays = {"a": np.arange(6), "b": np.arange(12).reshape(6, 2)}
        batches = list(iterate_batches(arrays, 3, seed=1, epoch=1))
        assert len(batches) == 2
        for batch in batches:
            np.testing.assert_array_equal(batch["b"][:, 0], 2 * batch["a"])

    def test_row_count_mismatch(self):
        with pytest.raises(ValueError, match="differ in row count"):
            num_rows({"a": np.zeros(2), "b": np.zeros(3)})


class TestMetrics:
    def test_gauc_hand_computed(self):
        users = np.array([1, 1, 1, 2, 2, 2, 2, 3, 3])
        labels = np.array([1, 0, 0, 1, 1, 0, 0, 1, 1])
        logits = np.array([0.9, 0.5, 0.95, 0.8, 0.1, 0.3, 0.2, 0.5, 0.6])
        # user 1: positive 0.9 beats 0.5, loses to 0.95 -> AUC 1/2, 3 samples
        # user 2: positives 0.8, 0.1 vs negatives 0.3, 0.2: 2 of 4 pairs -> 1/2, 4 samples
        # user 3: one label only: left out
        assert metrics.gauc(users, labels, logits) == pytest.approx((3 * 0.5 + 4 * 0.5) / 7)
        labels2 = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0])
        # user 3 now counts with AUC 0 (its positive scored lower), weight 2.
        assert metrics.gauc(users, labels2, logits) == pytest.approx((1.5 + 2.0 + 0.0) / 9)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_gauc_equals_the_per_user_sklearn_loop(self, seed):
        from sklearn.metrics import roc_auc_score

        rng = np.random.default_rng(seed)
        n = 2_000  # about ten rows a user: most have both labels, some one
        users = rng.integers(0, 200, n).astype(str) if seed == 2 else rng.integers(0, 200, n)
        labels = rng.integers(0, 2, n).astype(np.float32)
        logits = np.round(rng.normal(size=n), 1 if seed == 1 else 6)  # seed 1: many tied scores
        if seed == 0:
            logits = np.round(logits, 2).astype(np.float32)  # the backends' dtype, ties and -0.0 included
            logits[:50] = -0.0
        frame = pd.DataFrame({"user": users, "label": labels, "logit": logits})
        total = weight = 0.0
        for _, group in frame.groupby("user", sort=False):  # the definition, one sklearn call per user
            if group["label"].nunique() == 2:
                total += len(group) * roc_auc_score(group["label"], group["logit"])
                weight += len(group)
        assert abs(metrics.gauc(users, labels, logits) - total / weight) < 1e-12

    def test_gauc_without_eligible_users_is_nan(self):
        assert np.isnan(metrics.gauc(np.array([1, 2]), np.array([0, 1]), np.array([0.1, 0.2])))

    def test_log_loss_matches_sklearn_on_probabilities(self):
        rng = np.random.default_rng(0)
        logits = rng.normal(size=100) * 3
        labels = rng.integers(0, 2, 100)
        expected = sklearn_log_loss(labels, 1 / (1 + np.exp(-logits)))
        assert metrics.log_loss(labels, logits) == pytest.approx(expected, rel=1e-9)

    def test_auc(self):
        assert metrics.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
        assert np.isnan(metrics.auc(np.array([1, 1]), np.array([0.1, 0.2])))
