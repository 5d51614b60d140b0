import math

import numpy as np
import pytest
import torch

from core.config import DINConfig
from data.schema import LABEL
from din_torch.attention import AttentionUnit
from din_torch.model import DIN
from din_torch.steps import make_optimizer, train_step
from parity.synthetic import random_batch, random_schema

CONFIG = DINConfig()


def tensors(batch):
    return {k: torch.from_numpy(v) for k, v in batch.items()}



@pytest.mark.parametrize("train", [False, True])
def test_attention_hand_computed_example(train):
    """fc outputs a constant 2*sqrt(D): every real position weighs sigmoid(2), padding 0."""
    torch.manual_seed(0)
    unit = AttentionUnit(2, CONFIG.replace(attention_dropout=0.0))
    with torch.no_grad():
        unit.fc.weight.zero_()
        unit.fc.bias.fill_(2 * math.sqrt(2))
    unit.train(train)
    keys = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # B = 1, T = 3, D = 2
    interest, weights = unit(torch.zeros(1, 2), keys, torch.tensor([2]))
    s = 1 / (1 + math.exp(-2))
    np.testing.assert_allclose(weights.detach().numpy(), [[s, s, 0.0]], rtol=1e-6)
    assert weights[0, 2].item() == 0.0  # exactly zero, not small
    np.testing.assert_allclose(interest.detach().numpy(), [[4 * s, 6 * s]], rtol=1e-6)
    assert interest.shape == (1, 2)  # B = 1 keeps its batch axis


@pytest.mark.parametrize("size", [1, 2, 128])
def test_forward_gives_one_logit_per_example(size):
    schema = random_schema(np.random.default_rng(1))
    model = DIN(schema, CONFIG).eval()
    logits, intermediates = model(tensors(random_batch(schema, size, np.random.default_rng(2))))
    assert logits.shape == (size,)
    assert intermediates["mlp_input"].shape == (size, schema.mlp_input_dim(CONFIG.embedding_dim))


def test_training_on_a_batch_of_one_is_an_error():
    schema = random_schema(np.random.default_rng(1))
    model = DIN(schema, CONFIG).train()
    with pytest.raises(ValueError, match="batch of one"):
        model(tensors(random_batch(schema, 1, np.random.default_rng(2))))


def test_padding_rows_stay_zero_and_attention_masks_padding():
    rng = np.random.default_rng(3)
    schema = random_schema(rng)
    torch.manual_seed(0)
    model = DIN(schema, CONFIG)
    optimizer = make_optimizer(model, CONFIG)
    for _ in range(5):
        train_step(model, optimizer, tensors(random_batch(schema, 16, rng)))
    for name, table in model.embeddings.tables.items():
        assert torch.count_nonzero(table.weight[0]) == 0, name
    model.eval()
    batch = random_batch(schema, 16, rng)
    _, intermediates = model(tensors(batch))
    for group in schema.attention_groups:
        weights = intermediates[f"attention_weights/{group.name}"].detach().numpy()
        length = np.min([np.count_nonzero(batch[h], axis=1) for h in group.histories], axis=0)
        padded = np.arange(weights.shape[1])[None, :] >= length[:, None]
        assert np.all(weights[padded] == 0.0) and np.all(weights[~padded] > 0.0)


def test_loss_falls_on_a_fixed_batch():
    rng = np.random.default_rng(4)
    schema = random_schema(rng)
    torch.manual_seed(0)
    model = DIN(schema, CONFIG.replace(attention_dropout=0.0, mlp_dropout=0.0))
    optimizer = make_optimizer(model, CONFIG)
    batch = tensors(random_batch(schema, 64, rng))
    losses = [train_step(model, optimizer, batch).item() for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert batch[LABEL].dtype == torch.float32


def test_the_backend_computes_with_subnormals_flushed():
    """The torch backend trains and evaluates with subnormal floats flushed to
    zero (XLA's CPU arithmetic), not at a fraction of the CPU's speed; the
    mode is cleared after, so the rest of the process computes on them."""
    from din_torch.backend import TorchBackend

    rng = np.random.default_rng(0)
    schema = random_schema(rng)
    backend = TorchBackend(schema, CONFIG.replace(attention_dropout=0.0, mlp_dropout=0.0))
    product = lambda: (torch.tensor(np.float32(1e-39)) * 3.0).item()  # noqa: E731: subnormal in float32
    assert product() != 0.0  # this platform computes on subnormals, outside the backend
    seen = []
    forward = backend.model.forward
    backend.model.forward = lambda batch: seen.append(product()) or forward(batch)
    data = random_batch(schema, 16, rng)
    backend.train_batches(data, [np.arange(8), np.arange(8, 16)], lambda n: None)
    backend.predict(data, 8)
    assert seen == [0.0] * 4  # two training steps, two evaluation batches: flushed
    assert product() != 0.0
