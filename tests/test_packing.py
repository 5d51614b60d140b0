"""din_jax/packing.py: the attention's packed rows, sized from the training split."""

import math

import numpy as np

from din_jax import packing
from core.config import PRESETS, DINConfig
from parity.synthetic import random_batch, random_schema


def one_group_split(rows: int = 500):
    rng = np.random.default_rng(0)
    schema = random_schema(rng, groups=1)
    return schema, random_batch(schema, rows, rng)


def test_live_positions_are_those_before_the_length_or_holding_an_id():
    schema, _ = one_group_split()
    group = schema.attention_groups[0]
    steps = 6
    ids = {h: np.zeros((3, steps), np.int32) for h in group.histories}
    first = group.histories[0]
    ids[first][0, :4] = 5  # 4 ids
    ids[first][1, [0, 3]] = 5  # a gap: 2 ids, live where they are and before the length (2)
    for h in group.histories[1:]:
        ids[h][:] = ids[first]
    np.testing.assert_array_equal(packing.live_counts(group, ids), [4, 3, 0])


def test_the_share_is_the_mean_live_share_plus_four_standard_errors_of_a_batch():
    schema, train = one_group_split()
    group = schema.attention_groups[0]
    share = packing.live_counts(group, train) / train[group.histories[0]].shape[1]
    config = DINConfig(**PRESETS["paper"] | {"embedding_dim": 4}, batch_size=64)
    assert packing.worth_packing(config, schema)
    expected = math.ceil((share.mean() + 4 * share.std() / 8) * 1000) / 1000
    assert packing.resolve(config, schema, train).history_share == min(1.0, expected) < 1.0
    assert packing.resolve(config.replace(history_share=0.3), schema, train).history_share == 0.3  # given: kept


def test_a_narrow_attention_mlp_computes_every_position():
    schema, train = one_group_split()
    config = DINConfig(attention_hidden=(16, 8), embedding_dim=16)  # the tutorial's: packed rows do not pay
    assert not packing.worth_packing(config, schema)
    assert packing.resolve(config, schema, train).history_share == 1.0


def test_a_batch_fits_when_its_live_positions_fit_the_capacity():
    schema, train = one_group_split(64)
    group = schema.attention_groups[0]
    steps = train[group.histories[0]].shape[1]
    live = int(packing.live_counts(group, train).sum())
    block = {k: v[None] for k, v in train.items()}  # one step of 64 rows
    assert packing.packed_capacity(64, steps, 0.0) == packing.packed_capacity(64, steps, 1.0) == 64 * steps
    enough, short = live / (64 * steps), (live - 8) / (64 * steps)
    assert packing.packed_capacity(64, steps, enough) >= live
    assert packing.fits(schema, enough, block)
    assert not packing.fits(schema, short, block)


def test_training_with_attention_dropout_and_padding_in_the_statistics_computes_every_position():
    config = DINConfig(history_share=0.5)  # attention dropout 0.1, padding in the statistics
    assert packing.packs(config, train=False)
    assert not packing.packs(config, train=True)
    assert packing.packs(config.replace(mask_padding=True), train=True)
    assert packing.packs(config.replace(attention_dropout=0.0), train=True)
    assert not packing.packs(config.replace(history_share=1.0), train=False)
