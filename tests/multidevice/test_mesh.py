"""Training on a device mesh gives the parameters of one device.

Runs in a child process with 8 CPU devices (tests/test_multidevice.py sets
XLA_FLAGS before JAX starts), in float32 and again in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from core.config import DINConfig
from data.batches import epoch_batches
from din_jax.backend import JaxBackend
from parity.synthetic import random_batch, random_schema
from training.regularization import mba_scales

X64 = bool(jax.config.jax_enable_x64)
DTYPE = jnp.float64 if X64 else jnp.float32
TOLERANCE = 1e-10 if X64 else 1e-5
# Decay on the attention too: without it the Dense biases that feed a BatchNorm (true gradient 0)
# step by each mesh's rounding noise over Adam's eps (tests/parity/test_parity.py, STEP_DECAY).
CONFIG = DINConfig(batch_size=64, eval_batch_size=64, mba_reg=0.1, attention_weight_decay=0.001)
MESHES = ["data=1", "data=8", "data=4,model=2", "data=4,model=2 streamed"]  # data=8 streamed: below


@pytest.fixture(scope="module", autouse=True)
def eight_devices():
    assert jax.device_count() == 8, "run through tests/test_multidevice.py (XLA_FLAGS=--xla_force_host_platform_device_count=8)"


def train_20_steps(mesh_text: str, config: DINConfig, progress=lambda n: None):
    """'data=N[,model=M][ streamed]': the mesh, and batches streamed from the host
    (else gathered from a copy of the data on every device)."""
    rng = np.random.default_rng(0)
    schema = random_schema(rng, groups=2)
    data = random_batch(schema, 200, rng, dtype=np.dtype(DTYPE))
    scales = mba_scales(schema, data, config.mba_reg) if config.mba_reg else None
    mesh_text, _, streamed = mesh_text.partition(" ")
    config = config.replace(input="stream" if streamed else "device", steps_per_call=4, param_dtype=np.dtype(DTYPE).name,
                            mesh=mesh_text, shard_embeddings="model" in mesh_text)
    backend = JaxBackend(schema, config, mba_scales=scales)
    batches = [b for epoch in (1, 2, 3, 4, 5, 6) for b in epoch_batches(200, config.batch_size, 0, epoch)][:20]
    for start in range(0, 20, 5):
        backend.train_batches(data, batches[start : start + 5], progress)
    assert int(backend.state.step) == 20
    return backend, data


# With the paper's options on (softmax, mask-padding, MBA) the meshes also
# agree in float64 (checked by hand, within 1e-10); in float32 masked pooling
# makes constant input columns whose weights (like a bias before BatchNorm)
# have a true gradient of 0 that Adam turns into reduction-order noise
# (seen: 1.8e-5). The suite runs the default model, MBA on so that its row
# scales are sharded too.
@pytest.fixture(scope="module")
def trained():
    """mesh -> (backend, data) after 20 steps; dropout on: its keys do not depend on the mesh."""
    return {mesh: train_20_steps(mesh, CONFIG) for mesh in MESHES}


def test_meshes_train_to_the_same_parameters(trained):
    results = trained
    reference, data = results["data=1"]
    expected = reference.weights()
    logits = reference.predict(data, 64)
    for mesh in MESHES[1:]:
        backend, _ = results[mesh]
        weights = backend.weights()
        assert weights.keys() == expected.keys()
        for name, value in weights.items():
            np.testing.assert_allclose(value, expected[name], rtol=0, atol=TOLERANCE, err_msg=f"{mesh}: {name}")
        np.testing.assert_allclose(backend.predict(data, 64), logits, rtol=0, atol=TOLERANCE * 10, err_msg=mesh)


def test_arrays_are_sharded_as_asked(trained):
    backend, _ = trained["data=4,model=2"]
    state = backend.state
    assert dict(backend.mesh.shape) == {"data": 4, "model": 2}
    tables = state.params["embeddings"]
    for name, table in tables.items():
        assert table["embedding"].sharding.spec == P("model", None), name
        assert table["embedding"].shape[0] % 2 == 0  # padded to shard evenly
        assert len({s.data.shape for s in table["embedding"].addressable_shards}) == 1
        assert table["embedding"].addressable_shards[0].data.shape[0] == table["embedding"].shape[0] // 2
    adam = state.opt_state[1][0]  # chain(add_decayed_weights, adam): adam's ScaleByAdamState
    for moments in (adam.mu, adam.nu):
        for name, table in moments["embeddings"].items():
            assert table["embedding"].sharding.spec == P("model", None), name
    for table, scale in backend.regularizer.scales.items():
        assert scale.sharding.spec == P("model"), table
    assert state.params["final"]["kernel"].sharding.is_fully_replicated
    assert jax.tree_util.tree_leaves(state.batch_stats)[0].sharding.is_fully_replicated
    # A batch's rows are split over 'data' (2 devices of 'model' hold each quarter).
    rows = backend.feed.rows(np.zeros((4, 64), np.int32))
    assert rows.sharding.spec == P(None, "data")
    assert {s.data.shape for s in rows.addressable_shards} == {(4, 16)}


def test_unsharded_mesh_keeps_tables_whole_and_replicated(trained):
    backend, _ = trained["data=8"]
    for name, table in backend.state.params["embeddings"].items():
        assert table["embedding"].sharding.is_fully_replicated, name
    with pytest.raises(ValueError, match="not divisible by the mesh's data axis"):
        JaxBackend(random_schema(np.random.default_rng(0)), DINConfig(batch_size=60, mesh="data=8"))


def test_streamed_input_puts_only_a_shard_of_each_batch_on_each_device(trained):
    """Streamed, no device ever holds the split, and each holds only its eighth
    of every batch: checked on the live arrays while training runs; and it
    trains to the parameters of one device."""
    blocks, splits, earlier = [], [], set()

    def inspect(samples, skip=earlier):
        for array in jax.live_arrays():
            if id(array) in skip:  # other tests' backends
                continue
            if array.shape[:2] == (4, 64):  # a block of batches: [K, B, ...]
                blocks.append({s.data.shape[:2] for s in array.addressable_shards})
            if array.shape[:1] == (200,):  # as many rows as the split
                splits.append(array.shape)

    earlier.update(id(array) for array in jax.live_arrays())
    backend, data = train_20_steps("data=8 streamed", CONFIG, inspect)
    assert backend.input_path == "streamed" and not backend.feed._on_device
    assert blocks and all(shapes == {(4, 8)} for shapes in blocks), blocks
    assert not splits, splits
    expected = trained["data=1"][0].weights()
    for name, value in backend.weights().items():
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=TOLERANCE, err_msg=name)
    # The check sees a split when there is one: the device-resident backends' copies.
    assert trained["data=8"][0].input_path == "device-resident"
    inspect(0, skip=set())
    assert splits


def test_a_grown_vocabulary_trains_alike_on_a_sharded_mesh():
    """A continued run's growth (training/continual.py) on tables split over
    'model', their grown row counts odd (so no longer dividing the mesh): the
    same weights and Adam state after growth, and after 10 steps, as on one device."""
    import dataclasses

    from training.continual import Parent, start_from

    rng = np.random.default_rng(3)
    schema = random_schema(rng, groups=1)
    config = CONFIG.replace(mba_reg=0.0, steps_per_call=4, param_dtype=np.dtype(DTYPE).name)
    parent = JaxBackend(schema, config)
    first = random_batch(schema, 200, rng, dtype=np.dtype(DTYPE))
    parent.train_batches(first, epoch_batches(200, 64, 0, 1), lambda n: None)
    run = Parent("parent", config, None, "jax", parent.weights(), parent.optimizer_state(), {}, "")
    more = lambda f: dataclasses.replace(f, vocab_size=2 * (f.vocab_size // 2) + 5)  # noqa: E731  odd, and larger
    bigger = dataclasses.replace(schema, categorical=tuple(map(more, schema.categorical)),
                                 sequence=tuple(map(more, schema.sequence)))
    data = random_batch(bigger, 200, np.random.default_rng(4), dtype=np.dtype(DTYPE))
    after = {}
    for mesh in ("data=1", "data=4,model=2"):
        backend = JaxBackend(bigger, config.replace(seed=1, mesh=mesh, shard_embeddings="model" in mesh))
        start_from(backend, run)
        grown = (backend.weights(), backend.optimizer_state())
        backend.train_batches(data, epoch_batches(200, 64, 0, 1) + epoch_batches(200, 64, 0, 2)[:6], lambda n: None)
        after[mesh] = (grown, backend.weights())
    (one_grown, one), (mesh_grown, mesh) = after.values()
    for name, value in {**one_grown[0], **one_grown[1]}.items():  # new rows as each mesh initialises them: an ulp apart
        np.testing.assert_allclose({**mesh_grown[0], **mesh_grown[1]}[name], value, atol=TOLERANCE, err_msg=name)
    for name, value in one.items():
        np.testing.assert_allclose(mesh[name], value, atol=TOLERANCE, err_msg=name)
