import numpy as np
import pytest

from data.encoders import CategoryEncoder, FeatureEncoders, NumericEncoder, SequenceEncoder
from data.features import features
from data.schema import AttentionGroup
from data.statistics import fit_encoders
from data.vocabulary import Vocabulary


class TestVocabulary:
    def test_min_count_sorted_padding_unknown(self):
        vocab = Vocabulary.fit(["b", "a", "b", "c", "b", "a"], min_count=2)
        assert vocab.terms.tolist() == ["a", "b"]  # c seen once: dropped
        assert vocab.unknown == 3 and vocab.size == 4
        assert vocab.encode(np.array(["a", "c", "z", "b", ""])).tolist() == [1, 3, 3, 2, 3]

    def test_empty_values_are_never_a_term(self):
        vocab = Vocabulary.fit(["", "", "", "a", "a"], min_count=2)
        assert vocab.terms.tolist() == ["a"]
        assert vocab.encode(np.array([""])).tolist() == [vocab.unknown]

    def test_integer_ids_encode_as_their_strings(self):
        vocab = Vocabulary.fit(np.array([10, 9, 10, 9, 0, 0, 0]), min_count=2)  # 0 = padding, not counted
        assert vocab.terms.tolist() == ["10", "9"]  # string order, as for the tutorial's CSV ids
        assert vocab.encode(np.array([[9, 10, 0], [7, 0, 0]])).tolist() == [[2, 1, 0], [3, 0, 0]]
        assert vocab.encode(np.array(["9", "10"])).tolist() == [2, 1]  # same ids from strings

    def test_empty_vocabulary_maps_everything_to_unknown(self):
        vocab = Vocabulary.fit(["a"], min_count=5)
        assert vocab.size == 2
        assert vocab.encode(np.array(["a", "b"])).tolist() == [1, 1]


class TestCategoryEncoder:
    def test_hand_computed(self):
        encoder = CategoryEncoder.fit(np.array(["M", "F", "M", "F", "X"]), min_count=2)
        assert encoder.transform(np.array(["F", "M", "X", "?"])).tolist() == [1, 2, 3, 3]
        assert encoder.transform(np.array(["F"])).dtype == np.int32

    def test_json_round_trip(self):
        encoder = CategoryEncoder.fit(np.array(["10", "9", "10", "9"]), min_count=1)
        again = CategoryEncoder.from_dict(encoder.to_dict())
        # String order: "10" < "9".
        assert again.transform(np.array(["10", "9", "8"])).tolist() == [1, 2, 3]


class TestSequenceEncoder:
    def test_hand_computed_vocabulary_max_len_padding_truncation(self):
        encoder = SequenceEncoder.fit(["x|y", "y|z|x", "", "y"], min_count=2)
        assert encoder.vocabulary.terms.tolist() == ["x", "y"]
        assert encoder.max_len == 3  # the longest training sequence
        out = encoder.transform(["x|y", "z|q|x|y", "", "q"])
        # Cut to the 3 most recent (the end of an oldest-first list), right-padded.
        assert out.tolist() == [[1, 2, 0], [3, 1, 2], [0, 0, 0], [3, 0, 0]]
        assert out.dtype == np.int32

    def test_one_cut_rule_for_strings_matrices_and_latest_first_lists(self):
        encoder = SequenceEncoder.fit(["1|2", "2|3|1"], min_count=1)  # terms 1, 2, 3 -> codes 1, 2, 3; max_len 3
        history = ["9|9|9|9|1|2", "3", "1|2|3"]  # oldest first: fifty unknown old ids would hide the liked ones
        expected = [[4, 1, 2], [3, 0, 0], [1, 2, 3]]
        assert encoder.transform(history).tolist() == expected
        matrix = np.array([[9, 9, 9, 9, 1, 2], [3, 0, 0, 0, 0, 0], [1, 2, 3, 0, 0, 0]])  # the builders' layout
        assert encoder.transform(matrix).tolist() == expected
        latest_first = SequenceEncoder.fit(["1|2", "2|3|1"], min_count=1, order="latest-first")
        assert latest_first.transform(["2|1|9|9|9|9", "3"]).tolist() == [[2, 1, 4], [3, 0, 0]]
        again = SequenceEncoder.from_dict(latest_first.to_dict())
        assert again.order == "latest-first" and again.transform(["2|1|9|9"]).tolist() == [[2, 1, 4]]
        legacy = {k: v for k, v in encoder.to_dict().items() if k != "order"}  # encoders.json of older runs
        assert SequenceEncoder.from_dict(legacy).transform(history).tolist() == expected

    def test_nan_is_not_a_term(self):
        # Empty sequences never become a vocabulary term (the tutorial's 'nan' bug).
        encoder = SequenceEncoder.fit(["", "", "", "", "", "a"], min_count=1)
        assert encoder.vocabulary.terms.tolist() == ["a"]
        assert encoder.transform([""]).tolist() == [[0]]

    def test_all_empty_training_sequences_keep_one_slot(self):
        encoder = SequenceEncoder.fit(["", ""], min_count=1)
        assert encoder.max_len == 1
        assert encoder.transform(["a", ""]).tolist() == [[1], [0]]  # unknown, padding

    def test_json_round_trip(self):
        encoder = SequenceEncoder.fit(["a|b", "b"], min_count=1)
        again = SequenceEncoder.from_dict(encoder.to_dict())
        np.testing.assert_array_equal(again.transform(["b|a|c"]), encoder.transform(["b|a|c"]))


class TestNumericEncoder:
    def test_mean_imputation_then_quantiles(self):
        encoder = NumericEncoder.fit(np.array([1.0, np.nan, 2.0, 4.0, 5.0]))
        assert encoder.mean == 3.0
        # Imputed [1, 3, 2, 4, 5]: quantiles 1..5 at references 0, .25, .5, .75, 1;
        # linear in between, clipped outside.
        out = encoder.transform(np.array([1.0, np.nan, 1.5, 4.5, 100.0, -10.0]))
        np.testing.assert_allclose(out, [0.0, 0.5, 0.125, 0.875, 1.0, 0.0], atol=1e-7)
        assert out.dtype == np.float32
        assert encoder.transform(np.array([])).shape == (0,)

    def test_json_round_trip_is_identical(self):
        values = np.random.default_rng(0).normal(size=500)
        encoder = NumericEncoder.fit(values)
        again = NumericEncoder.from_dict(encoder.to_dict())
        probe = np.linspace(-4, 4, 101)
        np.testing.assert_array_equal(again.transform(probe), encoder.transform(probe))

    def test_all_missing_is_an_error(self):
        with pytest.raises(ValueError, match="every training value is missing"):
            NumericEncoder.fit(np.array([np.nan, np.nan]))


def test_feature_encoders_json_round_trip_and_schema():
    columns = {
        "n": np.array([1.0, 2.0, 3.0]),
        "q": np.array(["a", "b", "a"]),
        "h": np.array(["a|b", "b", ""]),
    }
    group = AttentionGroup("g", (("q", "h"),))
    encoders = fit_encoders(columns, features(["n"], ["q"], ["h"]), [group], min_count=1)
    schema = encoders.schema()
    assert [f.vocab_size for f in schema.categorical] == [4] and schema.sequence[0].max_len == 2
    again = FeatureEncoders.from_json(encoders.to_json())
    assert again.schema() == schema
    for name, values in encoders.transform(columns).items():
        np.testing.assert_array_equal(again.transform(columns)[name], values)


def test_shared_vocabulary_is_fitted_on_the_union():
    columns = {"q": np.array(["a", "b", "b"]), "h": np.array(["a|c", "c|d", ""])}
    group = AttentionGroup("g", (("q", "h"),))
    separate = fit_encoders(columns, features([], ["q"], ["h"]), [group], min_count=2)
    assert separate.categorical["q"].vocabulary.terms.tolist() == ["b"]
    assert separate.sequence["h"].vocabulary.terms.tolist() == ["c"]
    shared = fit_encoders(columns, features([], ["q"], ["h"]), [group], min_count=2, share_embeddings=True)
    # Union counts: a 2, b 2, c 2, d 1.
    assert shared.categorical["q"].vocabulary.terms.tolist() == ["a", "b", "c"]
    assert shared.sequence["h"].transform(["d|a|c"]).tolist() == [[1, 3]]  # cut to the latest max_len 2
    assert shared.categorical["q"].transform(np.array(["c"])).tolist() == [3]  # same id in both
    schema = shared.schema()
    assert schema.shared == (("h", "q"),) and [f.name for f in schema.tables] == ["q"]
    assert FeatureEncoders.from_json(shared.to_json()).schema() == schema


def test_inconsistent_attention_group_is_rejected():
    columns = {"q": np.array(["a"]), "h": np.array(["a"])}
    with pytest.raises(ValueError, match="not a categorical feature"):
        fit_encoders(columns, features([], [], ["q", "h"]), [AttentionGroup("g", (("q", "h"),))], min_count=1)


def test_statistics_of_chunks_fit_the_encoders_of_the_whole():
    """Fitting from statistics summed over chunks (as a bounded-memory build
    does), with pd.Categorical columns among them, gives the encoders of the
    whole split given as plain arrays."""
    import pandas as pd

    from data.statistics import Statistics
    from data.features import Feature

    rng = np.random.default_rng(0)
    n = 500
    words = np.array(["", "a", "b|c", "c|a|b|d", "e"], dtype=object)
    columns = {
        "n": rng.normal(size=n).round(2),
        "q": rng.integers(1, 40, size=n),
        "g": rng.choice(["x", "y", "z", ""], size=n),
        "s": words[rng.integers(0, len(words), size=n)].astype(str),
        "h": np.where(rng.random((n, 6)) < 0.6, rng.integers(1, 60, size=(n, 6)), 0),
    }
    columns["h"] = -np.sort(-columns["h"], axis=1)  # right-padded
    specs = (Feature("n", "numeric"), Feature("q", "categorical"), Feature("g", "categorical"),
             Feature("s", "sequence", min_count=3), Feature("h", "sequence"))
    group = AttentionGroup("g1", (("q", "h"),))
    whole = Statistics(specs).add(columns).fit([group], min_count=2, share_embeddings=True)
    chunked = Statistics(specs)
    for rows in np.array_split(np.arange(n), 7):
        chunk = {name: values[rows] for name, values in columns.items()}
        chunk["s"], chunk["g"] = pd.Categorical(chunk["s"]), pd.Categorical(chunk["g"])  # as the builders give them
        chunked.add(chunk)
    fitted = chunked.fit([group], min_count=2, share_embeddings=True)
    assert fitted.to_json() == whole.to_json()
    encoded = fitted.transform({**columns, "s": pd.Categorical(columns["s"]), "g": pd.Categorical(columns["g"])})
    for name, values in whole.transform(columns).items():
        np.testing.assert_array_equal(encoded[name], values, err_msg=name)


@pytest.mark.parametrize("as_integers", [False, True])
def test_a_grown_vocabulary_keeps_every_old_number_and_appends_the_new(as_integers):
    """Growth (a continued run): every term keeps its number, new terms (at
    least min_count) follow in sorted order, the unknown id moves past them;
    the order survives encoders.json; integer and string lookups agree."""
    from data.encoders import CategoryEncoder
    from data.vocabulary import Vocabulary, term_counts

    old = Vocabulary.fit(["30", "10", "20", "10"], min_count=1)  # 10, 20, 30 -> 1, 2, 3
    new_tokens = ["25", "5", "5", "20", "40"]
    grown = old.grown(Vocabulary.from_counts(term_counts(new_tokens), 2).terms)
    assert grown.terms.tolist() == ["10", "20", "30", "5"]  # '25' and '40' once: below min_count 2
    assert (old.unknown, grown.unknown, grown.size) == (4, 5, 6)
    tokens = np.array([10, 20, 30, 5, 25, 0]) if as_integers else np.array(["10", "20", "30", "5", "25", ""])
    expected = [1, 2, 3, 4, 5, 0] if as_integers else [1, 2, 3, 4, 5, 5]  # '' is no term: unknown
    assert grown.encode(tokens).tolist() == expected
    assert old.encode(tokens).tolist()[:3] == [1, 2, 3]
    again = CategoryEncoder.from_dict(CategoryEncoder(grown).to_dict()).vocabulary
    assert again.terms.tolist() == grown.terms.tolist() and again.encode(tokens).tolist() == expected
