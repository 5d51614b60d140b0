"""The torch DIN for inference: the eval-mode module, and its torch.export / ONNX exports.

Mirrors din_jax/inference.py: `Predictor` holds the model in eval mode (no
optimiser, no training split); `Serving` is the module the exports trace:
inputs positional in `schema.inputs` order, output probability [batch].
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch
from torch import nn

from core.config import DINConfig
from data.schema import FeatureSchema
from din_torch.model import DIN, example_batch, subnormals_flushed


def variable_shapes(schema: FeatureSchema, config: DINConfig) -> dict[str, tuple[int, ...]]:
    """The model's state_dict names and shapes (torch's naming), with no weights kept."""
    with torch.device("meta"):
        return {name: tuple(value.shape) for name, value in DIN(schema, config.model).state_dict().items()}


class Serving(nn.Module):
    """probability [batch] = sigmoid(DIN(inputs)); what the exports trace."""

    def __init__(self, model: DIN):
        super().__init__()
        self.model = model
        self.inputs = model.schema.inputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        logits, _ = self.model(dict(zip(self.inputs, inputs)))
        return torch.sigmoid(logits)  # [batch]


class Predictor:
    """Eval-mode DIN: batch -> (logits [B], attention weights per group [B, T])."""

    def __init__(self, schema: FeatureSchema, config: DINConfig, state_dict: dict[str, np.ndarray]):
        if config.dtype != "float32":  # a bfloat16 JAX run's weights are float32: torch computes in float32
            config = config.replace(dtype="float32")
        self.schema, self.inputs = schema, schema.inputs
        self.model = DIN(schema, config.model).eval()
        state = {name: torch.from_numpy(np.array(value, copy=True)) for name, value in state_dict.items()}
        state = {name: value.float() if value.is_floating_point() else value for name, value in state.items()}
        self.model.load_state_dict(state, strict=True)

    @torch.no_grad()
    @subnormals_flushed()
    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        logits, intermediates = self.model({name: torch.from_numpy(batch[name]) for name in self.inputs})
        weights = {g.name: intermediates[f"attention_weights/{g.name}"].numpy() for g in self.schema.attention_groups}
        return logits.numpy(), weights  # [B], {group: [B, T]}

    def _dynamic_shapes(self) -> tuple:
        batch = torch.export.Dim("batch", min=1, max=2**30)
        return (tuple({0: batch} for _ in self.inputs),)  # one entry: the *inputs tuple

    # Export formats -> the artifact file `write` puts in a folder.
    artifacts = {"torch": "model.pt2", "onnx": "model.onnx"}

    def write(self, fmt: str, folder: str) -> dict:
        """The `fmt` artifact of probability = sigmoid(logits) into `folder`;
        returns what the manifest adds (nothing)."""
        path = os.path.join(folder, self.artifacts[fmt])
        if fmt == "torch":
            torch.export.save(self.export(), path)
        else:
            self.export_onnx(path)
        return {}

    def export(self) -> torch.export.ExportedProgram:
        """torch.export of `Serving` with a dynamic batch dimension."""
        serving = Serving(self.model).eval()
        return torch.export.export(serving, tuple(example_batch(self.schema).values()), dynamic_shapes=self._dynamic_shapes())

    def export_onnx(self, path: str) -> None:
        """The ONNX graph of `Serving` (dynamo exporter), written to `path`."""
        serving = Serving(self.model).eval()
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        # The exporter's notes (optional torchvision ops, renamed axes) are no user's concern.
        exporter_log.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    serving, tuple(example_batch(self.schema).values()), dynamo=True, dynamic_shapes=self._dynamic_shapes(),
                    input_names=list(self.inputs), output_names=["probability"], verbose=False,
                )
        finally:
            exporter_log.setLevel(level)
        program.save(path)
