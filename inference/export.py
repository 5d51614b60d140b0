"""Export a finished run for serving: StableHLO (jax.export), torch.export (.pt2) or ONNX.

OUT/ holds the artifact, `manifest.json` (inputs in call order with dtypes
and shapes, the batch dimension symbolic; outputs) and the run's
`encoders.json`, so a serving system encodes raw ids exactly as training did
(data/encoders.py and data/vocabulary.py: vocabulary lookup, unknown and padding ids, quantiles).
Every artifact takes the encoded inputs positionally, in the manifest's
order, and returns probability [batch] float32. OUT is written whole or not
at all: beside the old export, which it replaces (--overwrite) only when whole.
"""

from __future__ import annotations

import json
import os
import shutil

from core.errors import ConfigError
from core.workdirs import work_dir
from data.schema import FeatureSchema
from inference.model import load_run
from training import outputs
from training.backend import EXPORTS

ARTIFACTS = {"stablehlo": "model.stablehlo", "torch": "model.pt2", "onnx": "model.onnx"}  # each Predictor's `artifacts`
BATCH = "batch"

HOW_TO_CALL = {
    "stablehlo": "jax.export.deserialize(open('model.stablehlo', 'rb').read()).call(*inputs); "
                 "jax only, on cpu, cuda or tpu; model.mlir is the same StableHLO module as text",
    "torch": "torch.export.load('model.pt2').module()(*inputs); torch only",
    "onnx": "onnxruntime.InferenceSession('model.onnx').run(None, {name: array}); any ONNX runtime",
}


def manifest(schema: FeatureSchema, fmt: str, run_dir: str, extra: dict | None = None) -> dict:
    inputs = []
    for name in schema.inputs:
        sequence = {f.name: f for f in schema.sequence}.get(name)
        dtype = "float32" if name in schema.numeric else "int32"
        inputs.append({"name": name, "dtype": dtype, "shape": [BATCH, sequence.max_len] if sequence else [BATCH]})
    return {
        "format": fmt,
        "artifact": ARTIFACTS[fmt],
        "run": os.path.abspath(run_dir),
        "inputs": inputs,
        "outputs": [{"name": "probability", "dtype": "float32", "shape": [BATCH]}],
        "encoders": "encoders.json",
        "encode": "encode.py: Encoder.load(folder)(rows) turns raw rows into these inputs (numpy only)",
        "call": HOW_TO_CALL[fmt],
        **(extra or {}),
    }


def export_run(run_dir: str, fmt: str, out: str, overwrite: bool = False) -> dict:
    """Writes OUT (see the module's doc); returns the manifest."""
    if fmt not in EXPORTS:
        raise ConfigError(f"--format {fmt}: expected one of {', '.join(EXPORTS)}")
    if fmt == "onnx":
        try:
            import onnx, onnxscript  # noqa: F401, E401  (the dynamo exporter's dependencies)
        except ImportError as error:
            raise ConfigError(f"--format onnx needs {error.name}: pip install -e '.[onnx]'") from None
    outputs.check_folder("--out", out, overwrite, "export", protect={"RUN_DIR": run_dir})
    model = load_run(run_dir, EXPORTS[fmt])
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    work = work_dir(".export-", parent)
    os.chmod(work, 0o755)  # mkdtemp makes it private; an export is for sharing
    try:
        extra = model.predictor.write(fmt, work)
        shutil.copyfile(os.path.join(run_dir, "encoders.json"), os.path.join(work, "encoders.json"))
        # Raw rows -> the artifact's inputs, numpy only: what a server reimplements or calls.
        shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_encoder.py"),
                        os.path.join(work, "encode.py"))
        found = manifest(model.schema, fmt, run_dir, extra)
        with open(os.path.join(work, "manifest.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(found, indent=2) + "\n")
        outputs.swap_in(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return found
