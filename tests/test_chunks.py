"""How many rows a CPU evaluates at a time (din_jax/chunks.py). That chunks
give the whole batch's results is tests/parity/test_fast_path.py's."""

import jax
import jax.numpy as jnp
import numpy as np

from core.config import DINConfig
from data.schema import AttentionGroup, CategoricalFeature, FeatureSchema, SequenceFeature
from din_jax.chunks import eval_chunk, in_chunks


def schema_with(lengths: list[int]) -> FeatureSchema:
    """One attention group of `length` positions per entry."""
    return FeatureSchema(
        numeric=(), categorical=(CategoricalFeature("item", 100),),
        sequence=tuple(SequenceFeature(f"history{i}", 100, n) for i, n in enumerate(lengths)),
        attention_groups=tuple(AttentionGroup(f"group{i}", (("item", f"history{i}"),)) for i in range(len(lengths))),
    )


def test_a_chunk_holds_what_fits_the_cache_and_big_batches_alone_are_chunked():
    assert jax.default_backend() == "cpu" and jax.device_count() == 1  # this suite's process
    paper = DINConfig(attention_hidden=(80, 40)).model
    tutorial = DINConfig().model  # attention 16-8
    # ml-latest-small at the paper's sizes: 2 x 50 positions x 80 units x 4 bytes = 32 KB a row -> 64 rows
    assert eval_chunk(schema_with([50, 50]), paper, 1024) == 64
    assert eval_chunk(schema_with([50, 50]), paper, 64) is None  # no smaller than the batch
    # Electronics' shape at the tutorial's sizes: 100 x 16 x 4 = 6.4 KB a row -> 256 rows
    assert eval_chunk(schema_with([100]), tutorial, 1024) == 256
    # The tutorial's split: a whole batch of 1024 fits
    assert eval_chunk(schema_with([10]), tutorial, 1024) is None
    # A row bigger than the budget still runs, one row at a time
    assert eval_chunk(schema_with([5000, 5000]), paper, 16) == 1


def test_chunks_keep_row_order_and_drop_the_filled_rows():
    batch = {"x": jnp.arange(37 * 3, dtype=jnp.float32).reshape(37, 3), "n": jnp.arange(37)}
    calls = []

    def fn(part):
        calls.append(part["x"].shape)
        return {"sum": part["x"].sum(axis=1), "n": part["n"] * 2}

    out = in_chunks(fn, batch, 8)
    assert calls == [(8, 3)]  # traced once, under lax.map
    np.testing.assert_array_equal(out["sum"], np.asarray(batch["x"]).sum(axis=1))
    np.testing.assert_array_equal(out["n"], np.arange(37) * 2)
    assert in_chunks(fn, batch, None)["sum"].shape == (37,) and calls[-1] == (37, 3)
