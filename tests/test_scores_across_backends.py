"""Scores compared row by row across the frameworks, from a JAX-trained run
with the defaults of raw MovieLens (synthetic, no download): the JAX
evaluation in cache-sized chunks against torch, and each exported artifact
against torch's probabilities. An AUC can hide a dropped bias or any monotone
error; a row's probability cannot."""

import numpy as np
import pytest

import export
import train
from data.datasets import raw_splits
from din_jax.chunks import eval_chunk
from inference import load_run
from inference.convert import names_to_torch
from parity.diffs import TOLERANCES
from test_export import call_artifact
from training import make_backend
from training.run_dir import read_run

pytestmark = pytest.mark.slow  # a JAX run and three exports
TOLERANCE = TOLERANCES["float32"]["forward"]  # a logit or probability, across frameworks


@pytest.fixture(scope="module")
def jax_run(ml1m_dir, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("scores") / "jax-default"
    assert train.main(["--backend", "jax", "--data", ml1m_dir, "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    return str(out)


@pytest.fixture(scope="module")
def test_inputs(jax_run, ml1m_dir) -> dict[str, np.ndarray]:
    model = load_run(jax_run)
    return model.encode(raw_splits(ml1m_dir, model.config)["test"])[1]


def probabilities(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(logits, np.float64)))


def test_chunked_evaluation_scores_each_row_as_torch_does(jax_run, test_inputs):
    """The loop's evaluation (JaxBackend.predict) and scoring (the JAX
    Predictor) at the run's eval batch, which a CPU runs in chunks, against
    torch's, every row."""
    config, encoders, weights, trained_by = read_run(jax_run)
    schema = encoders.schema()
    assert trained_by == "jax" and len(schema.attention_groups) == 2 and config.attention_hidden == (80, 40)
    assert eval_chunk(schema, config.model, config.eval_batch_size) is not None  # chunks, not the whole batch
    split = dict(test_inputs, label=np.zeros(len(test_inputs["movieId"]), np.float32))
    models = {backend: load_run(jax_run, backend) for backend in ("jax", "torch")}
    scored = {backend: model.forward(test_inputs)[0] for backend, model in models.items()}
    evaluated = {}
    for backend, names in (("jax", weights), ("torch", names_to_torch(weights))):  # the run's: JAX's names
        evaluator = make_backend(backend, schema, config)
        evaluator.load_weights(names)
        evaluated[backend] = evaluator.predict(split, config.eval_batch_size)
    worst = {f"{kind} jax vs torch": float(np.abs(found["jax"] - found["torch"]).max())
             for kind, found in (("scoring", scored), ("evaluation", evaluated))}
    worst["evaluation vs scoring (jax)"] = float(np.abs(evaluated["jax"] - scored["jax"]).max())
    print("largest logit differences:", worst)
    assert len(scored["jax"]) == len(test_inputs["movieId"]) > config.eval_batch_size
    assert max(worst.values()) <= TOLERANCE, worst


@pytest.mark.parametrize("fmt", ["stablehlo", "torch", "onnx"])
def test_every_export_of_a_jax_run_scores_each_row_as_torch_does(fmt, jax_run, test_inputs, tmp_path):
    out = tmp_path / fmt
    assert export.main([jax_run, "--format", fmt, "--out", str(out)]) == 0
    torch_model = load_run(jax_run, "torch")
    names = torch_model.schema.inputs
    rows = np.arange(1000)
    found = call_artifact(fmt, str(out), [test_inputs[name][rows] for name in names])
    expected = probabilities(torch_model.forward({name: test_inputs[name][rows] for name in names})[0])
    worst = float(np.abs(found - expected).max())
    print(f"{fmt} artifact vs torch's probabilities: largest difference {worst:.2e} over {len(rows)} rows")
    assert found.shape == expected.shape and worst <= TOLERANCE, worst
