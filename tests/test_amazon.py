"""Amazon in the DIN authors' protocol, checked sample for sample against their build_dataset.py."""

from __future__ import annotations

import gzip
import os
import random

import numpy as np
import pandas as pd
import pytest

import train
from conftest import sample_dir
from core.config import DINConfig
from core.errors import DataError
from data.datasets import detect, load_splits
from data.schema import LABEL, USER
from data.sources import amazon, amazon_files
from synthetic_amazon import make_reviews, write_amazon


def authors_build(folder: str):
    """A plain-Python transcription of zhougr1993/DeepInterestNetwork's
    utils/1_convert_pd.py, utils/2_remap_id.py and din/build_dataset.py (their
    pickles and Python 2 aside): (train_set, test_set, cate_list, item_count)."""
    reviews = pd.read_json(os.path.join(folder, "reviews_Electronics_5.json.gz"), lines=True)
    reviews = reviews[["reviewerID", "asin", "unixReviewTime"]]
    import ast

    with gzip.open(os.path.join(folder, "meta_Electronics.json.gz"), "rt") as f:
        meta = pd.DataFrame([ast.literal_eval(line) for line in f])
    meta = meta[meta["asin"].isin(reviews["asin"].unique())][["asin", "categories"]]
    meta["categories"] = meta["categories"].map(lambda x: x[-1][-1])
    reviews = reviews[reviews["asin"].isin(meta["asin"])]

    def build_map(df, col):
        key = sorted(df[col].unique().tolist())
        m = dict(zip(key, range(len(key))))
        df[col] = df[col].map(lambda x: m[x])
        return m, key

    asin_map, _ = build_map(meta, "asin")
    build_map(meta, "categories")
    build_map(reviews, "reviewerID")
    item_count = len(asin_map)
    meta = meta.sort_values("asin").reset_index(drop=True)
    reviews = reviews.assign(asin=reviews["asin"].map(lambda x: asin_map[x]))
    reviews = reviews.sort_values(["reviewerID", "unixReviewTime"], kind="stable").reset_index(drop=True)
    cate_list = meta["categories"].tolist()

    random.seed(1234)
    train_set, test_set = [], []
    for reviewer_id, hist in reviews.groupby("reviewerID"):
        pos_list = hist["asin"].tolist()

        def gen_neg():
            neg = pos_list[0]
            while neg in pos_list:
                neg = random.randint(0, item_count - 1)
            return neg

        neg_list = [gen_neg() for _ in range(len(pos_list))]
        for i in range(1, len(pos_list)):
            history = pos_list[:i]
            if i != len(pos_list) - 1:
                train_set.append((reviewer_id, history, pos_list[i], 1))
                train_set.append((reviewer_id, history, neg_list[i], 0))
            else:
                test_set.append((reviewer_id, history, (pos_list[i], neg_list[i])))
    return train_set, test_set, cate_list, item_count


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    reviews = make_reviews(users=40, items=60, reviews=330, seed=3)
    # Items 0-54 have meta: reviews of 55-59 are dropped, as the authors drop them.
    return write_amazon(str(tmp_path_factory.mktemp("amazon")), reviews, items=60, with_meta=range(55))


def rows(split: dict[str, np.ndarray], label: float) -> set:
    keep = split[LABEL] == label
    return {(int(u), tuple(int(i) - 1 for i in h if i), int(c) - 1)
            for u, h, c in zip(split[USER][keep], split["item_history"][keep], split["item"][keep])}


def test_samples_match_the_authors_build(small):
    train_set, test_set, cate_list, item_count = authors_build(small)
    config = DINConfig(valid_on_test=True, max_hist=100)  # the authors' own evaluation, histories uncut
    splits = amazon.raw_splits(small, config)
    train, test = splits["train"], splits["test"]
    users = {u for u, *_ in test_set}
    assert len(test[LABEL]) == 2 * len(test_set) == 2 * len(users)  # one (positive, negative) pair per user
    assert len(train[LABEL]) == len(train_set)  # 2 x sum(n - 2)
    assert rows(train, 1.0) == {(u, tuple(h), c) for u, h, c, y in train_set if y == 1}
    assert rows(test, 1.0) == {(u, tuple(h), pos) for u, h, (pos, _) in test_set}
    # Negatives: the same (user, history) as a positive, an item of the catalogue the user never reviewed.
    reviewed = {u: set(h) | {c} for u, h, c in rows(train, 1.0) | rows(test, 1.0)}
    for split in (train, test):
        negatives = rows(split, 0.0)
        assert {(u, h) for u, h, _ in negatives} == {(u, h) for u, h, _ in rows(split, 1.0)}
        assert all(0 <= c < item_count and c not in reviewed[u] for u, _, c in negatives)
    # Categories: the last element of the last path, for the candidate and every history item.
    for split in (train, test):
        assert all(cate_list[i - 1] == c - 1 for i, c in zip(split["item"], split["category"]))
        real = split["item_history"] > 0
        assert np.array_equal(split["category_history"] > 0, real)
        np.testing.assert_array_equal(np.asarray(cate_list)[split["item_history"][real] - 1],
                                      split["category_history"][real] - 1)


def test_validation_takes_each_users_second_to_last_position(small):
    authors = amazon.raw_splits(small, DINConfig(valid_on_test=True))
    ours = amazon.raw_splits(small, DINConfig())
    lengths = {u: max(len([i for i in h if i]) for h in ours["test"]["item_history"][ours["test"][USER] == u])
               for u in np.unique(ours["test"][USER])}
    assert all(len([i for i in h if i]) == lengths[u] - 1 for u, h in zip(ours["valid"][USER], ours["valid"]["item_history"]))
    assert len(ours["train"][LABEL]) + len(ours["valid"][LABEL]) == len(authors["train"][LABEL])
    np.testing.assert_array_equal(ours["test"]["item"], authors["test"]["item"])


def test_histories_keep_the_latest_items(small):
    full = amazon.raw_splits(small, DINConfig(max_hist=100))["test"]["item_history"]
    cut = amazon.raw_splits(small, DINConfig(max_hist=3))["test"]["item_history"]
    for long, short in zip(full, cut):
        real = long[long > 0]
        np.testing.assert_array_equal(short[short > 0], real[-3:])


def test_trains_end_to_end_with_both_features_in_one_group(small, tmp_path):
    assert detect(small, DINConfig()).name == "amazon"
    splits = load_splits(small, DINConfig(), cache_dir=str(tmp_path / "cache"))
    schema = splits.encoders.schema()
    assert [g.pairs for g in schema.attention_groups] == [(("item", "item_history"), ("category", "category_history"))]
    assert dict(schema.shared) == {"item_history": "item", "category_history": "category"}
    out = tmp_path / "run"
    assert train.main(["--backend", "torch", "--data", small, "--epochs", "1", "--out", str(out), "--no-progress",
                       "--cache-dir", str(tmp_path / "cache")]) == 0
    metrics = pd.read_json(out / "metrics.json", typ="series")
    # GAUC recomputed from the run's own scores of its test split (users with both labels only).
    from inference import load_run
    from training import metrics as figures

    model = load_run(str(out))
    test = amazon.raw_splits(small, model.config)["test"]
    logits = model.forward(model.encode(test)[1])[0]
    assert np.isfinite(metrics["test_gauc"])
    assert figures.gauc(test[USER], test[LABEL], logits) == pytest.approx(metrics["test_gauc"], abs=1e-6)


def test_the_real_reviews_file_builds_with_meta_lines_in_the_release_layout(tmp_path):
    path = os.path.join(sample_dir("amazon-electronics-sample"), "reviews_Electronics_5.head.json.gz")
    reviews = amazon_files.read_reviews(path)
    assert len(reviews) == 290 and reviews["item"].nunique() == 6 and reviews["user"].nunique() == 289
    assert reviews["time"].min() > 9e8 and reviews["user"].str.startswith("A").all()
    folder = tmp_path / "electronics"
    folder.mkdir()
    os.link(path, folder / "reviews_Electronics_5.json.gz")
    with gzip.open(folder / "meta_Electronics.json.gz", "wt") as f:  # Python literals, as the release writes them
        for k, item in enumerate(sorted(reviews["item"].unique())):
            f.write(repr({"asin": item, "title": f"Cable's {k}", "salesRank": {"Electronics": k},
                          "categories": [["Electronics", "Computers & Accessories", f"Cables {k % 2}"]]}) + "\n")
    splits = amazon.raw_splits(str(folder), DINConfig())
    twice = reviews["user"].value_counts()
    users = int((twice >= 2).sum())  # reviewers with a second review: one test pair each
    assert len(splits["test"][LABEL]) == 2 * users and len(splits["train"][LABEL]) == 2 * int((twice - 2).clip(0).sum())


def test_meta_lines_are_literals_never_code(small, tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    os.link(os.path.join(small, "reviews_Electronics_5.json.gz"), folder / "reviews_Electronics_5.json.gz")
    marker = tmp_path / "ran"
    reviewed = amazon_files.read_reviews(str(folder / "reviews_Electronics_5.json.gz"))["item"].iloc[0]
    line = f"{{'asin': '{reviewed}', 'categories': __import__('os').system('touch {marker}')}}\n"
    with gzip.open(folder / "meta_Electronics.json.gz", "wt") as f:
        f.write(line)
    with pytest.raises(DataError, match=r"meta_Electronics.json.gz, line 1: not a meta record"):
        amazon.raw_splits(str(folder), DINConfig())
    assert not marker.exists()


def test_a_missing_meta_file_names_both_files(small, tmp_path, capsys):
    folder = tmp_path / "reviews-only"
    folder.mkdir()
    os.link(os.path.join(small, "reviews_Electronics_5.json.gz"), folder / "reviews_Electronics_5.json.gz")
    code = train.main(["--backend", "torch", "--data", str(folder), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "reviews_Electronics_5.json.gz and meta_Electronics.json.gz" in err and amazon_files.RELEASE in err
