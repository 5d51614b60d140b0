"""Training steps of the torch DIN: the optimiser, the loss with the mini-batch
aware L2, and one step in train mode. Mirrors din_jax/steps.py."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core import schedule
from core.config import DINConfig
from data.schema import LABEL, FeatureSchema
from din_torch.model import DIN, Batch


def parameter_group(name: str) -> str:
    """The weight-decay group (core.config.DECAY_GROUPS) of a DIN parameter by its name."""
    return "embedding" if name.startswith("embeddings.") else "attention" if name.startswith("attention.") else "mlp"


def make_optimizer(model: torch.nn.Module, config: DINConfig, fused: bool = True) -> torch.optim.Optimizer:
    """Adam with weight decay per parameter group (config.weight_decays()):
    coupled, added to the gradient (torch.optim.Adam), or decoupled
    (torch.optim.AdamW). Consecutive parameters of one decay share a torch
    param group, so one decay for all is one group.

    fused=True: the same update in one kernel over all parameters, clearly
    faster on CPU than the default for-each implementation (bench/throughput.py
    measures both).
    """
    decays = config.weight_decays()
    groups: list[dict] = []
    for name, parameter in model.named_parameters():
        decay = decays[parameter_group(name)]
        if not groups or groups[-1]["weight_decay"] != decay:
            groups.append({"params": [], "weight_decay": decay})
        groups[-1]["params"].append(parameter)
    adam = torch.optim.Adam if config.weight_decay_form == "coupled" else torch.optim.AdamW
    return adam(groups, lr=config.learning_rate, betas=(config.adam_b1, config.adam_b2), eps=config.adam_eps,
                fused=fused)


def make_schedule(optimizer: torch.optim.Optimizer, config: DINConfig) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The learning-rate schedule (core/schedule.py; None: a constant rate), stepped after each update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor(config)) if schedule.scheduled(config) else None


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class MiniBatchAwareL2:
    """The paper's mini-batch aware L2 on embedding tables (eq. 4-5, see
    training/regularization.py): penalty = 1/2 sum_tables sum_j alpha_mj * s_j * ||w_j||^2
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
    model: DIN, optimizer: torch.optim.Optimizer, batch: Batch, regularizer: MiniBatchAwareL2 | None = None,
    rate: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> torch.Tensor:
    """One optimiser step in train mode (then the rate's schedule one step on); returns the (detached) batch loss."""
    model.train()
    loss = objective(model, batch, regularizer)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if rate is not None:
        rate.step()
    return loss.detach()
