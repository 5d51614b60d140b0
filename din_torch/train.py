"""Training and evaluation of the torch DIN behind the shared loop's interface."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from data.batches import Arrays, eval_batches, take
from data.config import DINConfig
from data.schema import LABEL, FeatureSchema
from din_torch.model import DIN, Batch


def make_optimizer(model: torch.nn.Module, config: DINConfig, fused: bool = True) -> torch.optim.Adam:
    """Adam with L2 weight decay added to the gradient (torch's coupled form).

    fused=True: the same update in one kernel over all parameters, clearly
    faster on CPU than the default for-each implementation (bench/throughput.py
    measures both).
    """
    return torch.optim.Adam(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_b1, config.adam_b2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def to_tensors(arrays: Arrays, names: tuple[str, ...], device: torch.device) -> Batch:
    return {name: torch.from_numpy(np.ascontiguousarray(arrays[name])).to(device) for name in names}


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def train_step(model: DIN, optimizer: torch.optim.Optimizer, batch: Batch) -> torch.Tensor:
    """One optimiser step in train mode; returns the (detached) batch loss."""
    model.train()
    logits, _ = model(batch)
    loss = loss_fn(logits, batch[LABEL])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


class TorchBackend:
    """The shared loop's backend interface (see training/backend.py) for torch."""

    name = "torch"

    def __init__(self, schema: FeatureSchema, config: DINConfig, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(config.seed)  # Initialisation and dropout masks.
        self.model = DIN(schema, config).to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.inputs = tuple(f.name for f in schema.embedded) + schema.numeric
        self.describe = f"torch {torch.__version__} on {self.device} ({torch.get_num_threads()} threads)"

    def train_epoch(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> float:
        total = torch.zeros((), device=self.device)
        for rows in batches:
            batch = to_tensors(take(data, rows), self.inputs + (LABEL,), self.device)
            total += train_step(self.model, self.optimizer, batch) * len(rows)
            progress(len(rows))
        return float(total) / sum(len(rows) for rows in batches)

    @torch.no_grad()
    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        self.model.eval()
        n = len(data[LABEL])
        logits = [self.model(to_tensors(take(data, rows), self.inputs, self.device))[0] for rows in eval_batches(n, batch_size)]
        return torch.cat(logits).cpu().numpy()  # [N]

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = {name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()}
        self.model.load_state_dict(state, strict=True)
