"""Parity of every artifact: StableHLO, .pt2 and ONNX reproduce the live model.

A torch run on the real MovieLens-1M split (tests/conftest.py: seed_run) is
exported to each format by export.py; each artifact, loaded the way a
serving system loads it (the framework alone, not this project's model
code), scores batches of 1, 7 and 1000 test rows.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import export
import predict
from inference import load_run
from training import metrics

SIZES = (1, 7, 1000)


@pytest.fixture(scope="module")
def inputs(seed_run, seed_data_dir) -> dict[str, np.ndarray]:
    """Encoded test rows, the artifacts' inputs [N, ...]."""
    rows = pd.read_csv(os.path.join(seed_data_dir, "test.csv"), dtype=str, keep_default_na=False)
    return load_run(seed_run).encode(rows)[1]


@pytest.fixture(scope="module")
def live(seed_run) -> dict[str, object]:
    return {backend: load_run(seed_run, backend) for backend in ("torch", "jax")}


@pytest.fixture(scope="module")
def exported(seed_run, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("exported")
    for fmt in ("stablehlo", "torch", "onnx"):
        assert export.main([seed_run, "--format", fmt, "--out", str(root / fmt)]) == 0
    return {fmt: str(root / fmt) for fmt in ("stablehlo", "torch", "onnx")}


def call_artifact(fmt: str, folder: str, batch: list[np.ndarray]) -> np.ndarray:
    manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
    path = os.path.join(folder, manifest["artifact"])
    if fmt == "stablehlo":
        from jax import export as jax_export

        with open(path, "rb") as f:
            return np.asarray(jax_export.deserialize(bytearray(f.read())).call(*batch))
    if fmt == "torch":
        import torch

        with torch.no_grad():
            return torch.export.load(path).module()(*(torch.from_numpy(x) for x in batch)).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {i["name"]: x for i, x in zip(manifest["inputs"], batch)})[0]


@pytest.mark.slow  # exports the run in all three formats (the ONNX exporter takes seconds)
def test_manifest_and_encoders(exported, seed_run, live):
    schema = live["torch"].schema
    for fmt, folder in exported.items():
        manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
        assert [i["name"] for i in manifest["inputs"]] == list(schema.inputs)
        shapes = {i["name"]: i["shape"] for i in manifest["inputs"]}
        assert shapes["histHighRatedMovieIds"] == ["batch", 10] and shapes["movieId"] == ["batch"]
        assert manifest["outputs"] == [{"name": "probability", "dtype": "float32", "shape": ["batch"]}]
        with open(os.path.join(folder, "encoders.json")) as a, open(os.path.join(seed_run, "encoders.json")) as b:
            assert a.read() == b.read()
    assert set(json.loads(open(os.path.join(exported["stablehlo"], "manifest.json")).read())["platforms"]) == {
        "cpu", "cuda", "tpu"}


@pytest.mark.slow  # the same three exports
def test_artifacts_reproduce_the_live_model(exported, inputs, live):
    names = live["torch"].schema.inputs
    worst = {}
    for size in SIZES:
        rows = np.arange(size)
        batch = [inputs[name][rows] for name in names]
        found = {fmt: call_artifact(fmt, folder, batch) for fmt, folder in exported.items()}
        reference = {b: live[b].predictor({n: inputs[n][rows] for n in names})[0] for b in live}
        reference = {b: 1 / (1 + np.exp(-logits.astype(np.float64))) for b, logits in reference.items()}
        for fmt, backend in (("stablehlo", "jax"), ("torch", "torch"), ("onnx", "torch")):
            assert found[fmt].shape == (size,) and found[fmt].dtype == np.float32
            worst[fmt] = max(worst.get(fmt, 0.0), float(np.abs(found[fmt] - reference[backend]).max()))
        worst["jax vs torch artifact"] = max(worst.get("jax vs torch artifact", 0.0),
                                             float(np.abs(found["stablehlo"] - found["torch"]).max()))
    print("largest differences:", worst)
    for fmt in ("stablehlo", "torch", "onnx"):
        assert worst[fmt] <= 1e-6, worst
    assert worst["jax vs torch artifact"] <= 1e-5, worst


def test_predict_with_the_other_framework(seed_run, seed_data_dir, tmp_path):
    csv_path = os.path.join(seed_data_dir, "test.csv")
    tables = {}
    for backend in ("torch", "jax"):
        out = tmp_path / f"{backend}.csv"
        assert predict.main([seed_run, "--data", csv_path, "--backend", backend, "--out", str(out), "--no-progress"]) == 0
        tables[backend] = pd.read_csv(out)
    np.testing.assert_allclose(tables["jax"]["probability"], tables["torch"]["probability"], atol=1e-5)
    aucs = [metrics.auc(t["label"], t["probability"]) for t in tables.values()]
    assert aucs[0] == pytest.approx(aucs[1], abs=1e-6)


def test_export_never_replaces_a_folder(seed_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"someone's model")
    assert export.main([seed_run, "--format", "torch", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "model.onnx").read_bytes() == b"someone's model"
    assert export.main([str(tmp_path), "--format", "torch", "--out", str(tmp_path / "new")]) == 2
    assert "is" in capsys.readouterr().err and not (tmp_path / "new").exists()


@pytest.mark.slow  # the exported artifacts (shared with the tests above)
def test_raw_rows_through_the_reference_encoder_score_as_predict_does(exported, seed_run, seed_data_dir, tmp_path):
    """Every export carries encode.py (numpy only): raw rows, numbers included,
    through it and into each artifact give predict.py's probabilities."""
    import csv
    import importlib.util

    source = os.path.join(seed_data_dir, "test.csv")
    with open(source, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:300]
    rows[0]["age"], rows[1]["age"] = "", "1000"  # the training mean; beyond the last quantile
    path = tmp_path / "rows.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert predict.main([seed_run, "--data", str(path), "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    expected = pd.read_csv(tmp_path / "p.csv")["probability"].to_numpy()
    for fmt, folder in exported.items():
        spec = importlib.util.spec_from_file_location(f"encode_{fmt}", os.path.join(folder, "encode.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        inputs = module.Encoder.load(folder)(rows)
        found = call_artifact(fmt, folder, inputs)
        worst = float(np.abs(found - expected).max())
        print(f"{fmt}: raw rows -> encode.py -> artifact vs predict.py: largest difference {worst:.2e}")
        assert worst <= 1e-6, (fmt, worst)
