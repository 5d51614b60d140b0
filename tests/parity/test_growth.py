"""A continued run's growth (training/continual.py), in both frameworks:
every table grown by new ids (new rows initialised as the model initialises
them, the unknown row moved to the end, Adam's moments zero for the new
rows, its step count kept) gives the same weights in torch's and Flax's
layouts, the same forward and gradients on batches that use the new ids,
and the same ten Adam steps from the grown state. Run in float32 here and
in float64 by tests/test_parity_float64.py, every option of tests/parity/test_parity.py."""

import dataclasses

import numpy as np
import pytest
import torch

from din_torch import steps as torch_steps
from inference.convert import flax_to_torch, from_names, to_names, torch_to_flax
from parity.compare import Twins
from parity.diffs import diff
from parity.synthetic import random_batch, random_schema
from test_parity import DTYPE, FLOAT32_NOISE, NO_DROPOUT, OPTIONS, X64, ZERO_GRADIENT_BIASES, assert_within
from training.continual import grown
from training.regularization import mba_scales

# Every option of the parity suite (the user id and the low-rated history are a
# categorical and a sequence feature like the random schema's).
GROWTH_OPTIONS = sorted(OPTIONS)
NEW_IDS = 3  # rows added to every table


def with_more_ids(schema):
    """The schema with every vocabulary NEW_IDS larger (shared tables stay shared)."""
    more = lambda f: dataclasses.replace(f, vocab_size=f.vocab_size + NEW_IDS)  # noqa: E731
    return dataclasses.replace(schema, categorical=tuple(map(more, schema.categorical)),
                               sequence=tuple(map(more, schema.sequence)))


@pytest.mark.parametrize("name", GROWTH_OPTIONS)
def test_a_grown_run_computes_the_same_in_both_frameworks(name):
    options = dict(OPTIONS[name])
    share = options.pop("share", False)
    rng = np.random.default_rng(11)
    schema = random_schema(rng, share=share)
    # As test_options_ten_adam_steps: the paper's init steps without decay; float32 leaves its steps and decoupled
    # decay's out (zero-gradient biases move by rounding noise over Adam's eps).
    noisy = any(options.get(k) == v for k, v in FLOAT32_NOISE.items())
    config = NO_DROPOUT.replace(**options | (ZERO_GRADIENT_BIASES if options.get("init") == "paper" else {}))
    # The parent: a few torch Adam steps, its weights and Adam state by torch's names.
    parent = Twins(schema, config, DTYPE, seed=1)
    optimizer = torch_steps.make_optimizer(parent.torch, config)
    for _ in range(3):
        torch_steps.train_step(parent.torch, optimizer, parent.torch_batch(random_batch(schema, 9, rng, np.dtype(DTYPE))))
    weights = {k: v.detach().numpy().copy() for k, v in parent.torch.state_dict().items()}
    named = dict(parent.torch.named_parameters())
    adam = {f"{m}/{k}": optimizer.state[p][key].numpy().copy() for k, p in named.items()
            for m, key in (("mu", "exp_avg"), ("nu", "exp_avg_sq"))}
    adam["count"] = np.asarray(3)

    bigger = with_more_ids(schema)
    scales = mba_scales(bigger, random_batch(bigger, 40, rng), config.mba_reg) if config.mba_reg else None
    twins = Twins(bigger, config, DTYPE, seed=2, mba_scales=scales)  # its initial rows: the new ids' rows
    fresh = {k: v.detach().numpy().copy() for k, v in twins.torch.state_dict().items()}
    # Grown in torch's layout and in Flax's, compared in torch's.
    in_torch = grown(weights, fresh)
    template = twins.template
    in_flax = grown(to_names(torch_to_flax(weights, parent.template)), to_names(torch_to_flax(fresh, template)))
    rows = [diff(f"grown {k}", in_torch[k], v, 0.0) for k, v in flax_to_torch(from_names(in_flax)).items()]
    for table in (k for k in in_torch if k.startswith("embeddings.")):
        old, new = weights[table], in_torch[table]
        assert len(new) == len(old) + NEW_IDS and np.array_equal(new[: len(old) - 1], old[:-1])
        assert np.array_equal(new[-1], old[-1]) and np.array_equal(new[len(old) - 1 : -1], fresh[table][len(old) - 1 : -1])
    assert_within(rows)

    twins.torch.load_state_dict({k: torch.as_tensor(v) for k, v in in_torch.items()})
    twins.variables = twins.flax_variables(twins.torch.state_dict())
    batch = random_batch(bigger, 13, rng, np.dtype(DTYPE))
    batch[bigger.categorical[0].name][:4] = bigger.categorical[0].vocab_size - 2  # the last new id
    rows = twins.forward(batch, train=True) + twins.forward(batch, train=False, prefix="eval ") + twins.gradients(batch)
    assert_within(rows)

    zeros = {k: np.zeros(named_shape, v.dtype) for k, v in adam.items() if k != "count"
             for named_shape in [fresh[k.split("/", 1)[1]].shape]}
    moments = grown(adam, zeros | {"count": adam["count"]})
    table = next(k for k in named if k.startswith("embeddings."))
    assert not moments[f"mu/{table}"][len(weights[table]) - 1 : -1].any()  # the new rows' moments: zero
    if noisy and not X64:
        return
    rows = twins.train_steps([random_batch(bigger, 9, rng, np.dtype(DTYPE)) for _ in range(10)], adam=moments)
    assert len(rows) == len(twins.torch.state_dict())
    assert_within(rows)
