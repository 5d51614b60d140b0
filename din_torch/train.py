"""Training and evaluation of the torch DIN behind the shared loop's interface."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from data.batches import Arrays, eval_batches, take
from data.config import DINConfig
from data.errors import ConfigError
from data.schema import LABEL, FeatureSchema
from din_torch.model import DIN, Batch


def make_optimizer(model: torch.nn.Module, config: DINConfig, fused: bool = True) -> torch.optim.Adam:
    """Adam with L2 weight decay added to the gradient (torch's coupled form).

    With config.mba_reg the embedding tables get no weight decay: the
    mini-batch aware term regularises them instead. fused=True: the same
    update in one kernel over all parameters, clearly faster on CPU than the
    default for-each implementation (bench/throughput.py measures both).
    """
    params: list | object = model.parameters()
    if config.mba_reg > 0:
        named = list(model.named_parameters())
        params = [
            {"params": [p for n, p in named if not n.startswith("embeddings.")]},
            {"params": [p for n, p in named if n.startswith("embeddings.")], "weight_decay": 0.0},
        ]
    return torch.optim.Adam(
        params,
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


class MiniBatchAwareL2:
    """The paper's mini-batch aware L2 on embedding tables (eq. 4-5, see
    data/regularization.py): penalty = 1/2 sum_tables sum_j alpha_mj * s_j * ||w_j||^2
    with s_j = lambda / n_j, so row j's gradient gains lambda * alpha_mj / n_j * w_j."""

    def __init__(self, schema: FeatureSchema, scales: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        self.columns = {table: schema.columns_of(table) for table in scales}
        self.scales = {table: torch.as_tensor(s, device=device) for table, s in scales.items()}  # each [V]

    def __call__(self, model: DIN, batch: Batch) -> torch.Tensor:
        total = 0.0
        for table, scale in self.scales.items():
            weight = model.embeddings.tables[table].weight  # [V, E]
            present = torch.zeros(len(scale), dtype=torch.bool, device=weight.device)  # alpha_mj
            for column in self.columns[table]:
                present[batch[column].reshape(-1)] = True
            present[0] = False  # padding
            rows = torch.where(present, scale.to(weight.dtype), 0.0)  # [V]
            total = total + (rows * weight.square().sum(dim=1)).sum()
        return 0.5 * total


def objective(model: DIN, batch: Batch, regularizer: MiniBatchAwareL2 | None = None) -> torch.Tensor:
    """The training loss: mean BCE, plus the mini-batch aware L2 when on (train mode)."""
    logits, _ = model(batch)
    loss = loss_fn(logits, batch[LABEL])
    return loss if regularizer is None else loss + regularizer(model, batch)


def train_step(
    model: DIN, optimizer: torch.optim.Optimizer, batch: Batch, regularizer: MiniBatchAwareL2 | None = None
) -> torch.Tensor:
    """One optimiser step in train mode; returns the (detached) batch loss."""
    model.train()
    loss = objective(model, batch, regularizer)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


class TorchBackend:
    """The shared loop's backend interface (see training/backend.py) for torch."""

    name = "torch"
    primary = True

    def __init__(
        self,
        schema: FeatureSchema,
        config: DINConfig,
        mba_scales: dict[str, np.ndarray] | None = None,
    ):
        """mba_scales: lambda / n_j per table row (data/regularization.py), when config.mba_reg > 0.
        config.device: where to compute ("": cuda when available, else cpu)."""
        for name in ("dtype", "param_dtype"):
            if getattr(config, name) != "float32":
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(config, name)}: the torch backend trains in "
                                  "float32 (bfloat16 and float64 are JAX's)")
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(config.seed)  # Initialisation and dropout masks.
        self.model = DIN(schema, config.model).to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.regularizer = None if mba_scales is None else MiniBatchAwareL2(schema, mba_scales, self.device)
        self.inputs = schema.inputs
        self.describe = f"torch {torch.__version__} on {self.device} ({torch.get_num_threads()} threads)"

    def train_epoch(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        losses = []
        for rows in batches:
            batch = to_tensors(take(data, rows), self.inputs + (LABEL,), self.device)
            losses.append(train_step(self.model, self.optimizer, batch, self.regularizer))
            progress(len(rows))
        # One host sync per call, as in the JAX backend.
        return torch.stack(losses).double().cpu().numpy() if losses else np.zeros(0)  # [batches]

    @torch.no_grad()
    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        self.model.eval()
        n = len(data[self.inputs[0]])
        logits = [self.model(to_tensors(take(data, rows), self.inputs, self.device))[0] for rows in eval_batches(n, batch_size)]
        return torch.cat(logits).cpu().numpy()  # [N]

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = {name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()}
        self.model.load_state_dict(state, strict=True)

    def save_state(self, path: str) -> None:
        """Model, Adam state and the RNG streams (dropout) into path/state.pt."""
        os.makedirs(path)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, os.path.join(path, "state.pt"))

    def load_state(self, path: str) -> None:
        state = torch.load(os.path.join(path, "state.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
