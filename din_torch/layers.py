"""The torch layers DIN is built from: BatchNorm (nn.BatchNorm1d, optionally
over weighted rows), Dice and the MLP of Linear, BatchNorm, activation and
dropout layers; din_jax/layers.py mirrors them. Shapes: N rows, H features
(docs/design.md)."""

from __future__ import annotations

import torch
from torch import nn

from core.config import DINConfig


class BatchNorm(nn.BatchNorm1d):
    """nn.BatchNorm1d whose train-mode statistics can skip rows.

    forward(x, mask): mask [N] (1 = real row, 0 = ignored) weights the batch
    mean and variance and the running-statistic update, as the Flax BatchNorm
    does; the ignored rows are still normalised. Without a mask (or in eval
    mode) it is exactly nn.BatchNorm1d.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # [N, H] -> [N, H]
        if mask is None or not self.training:
            return super().forward(x)
        weight = mask.to(x.dtype).unsqueeze(1)  # [N, 1]
        count = weight.sum()
        mean = (weight * x).sum(dim=0) / count.clamp(min=1)  # [H]
        var = (weight * (x - mean).square()).sum(dim=0) / count.clamp(min=1)  # [H], biased
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * count / (count - 1).clamp(min=1))  # unbiased
            self.num_batches_tracked.add_(1)
        out = (x - mean) / torch.sqrt(var + self.eps)
        return out * self.weight + self.bias if self.affine else out


class Dice(nn.Module):
    """Dice(x) = alpha * (1 - p) * x + p * x with p = sigmoid(BatchNorm(x)).

    The BatchNorm uses batch statistics in train mode and running ones in eval
    mode, so the activation adapts to the data distribution (paper, eq. 2).
    affine=False is the paper's form: a BatchNorm with no weight and bias.
    """

    def __init__(self, features: int, eps: float, momentum: float, affine: bool = True):
        super().__init__()
        self.batchnorm = BatchNorm(features, eps=eps, momentum=momentum, affine=affine)
        self.alpha = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # [N, H] -> [N, H]
        p = torch.sigmoid(self.batchnorm(x, mask))
        return self.alpha * (1 - p) * x + p * x


class MLP(nn.Module):
    """Layers of Linear -> BatchNorm1d -> activation (Dice or PReLU) -> Dropout."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], activation: str, dropout: float, config: DINConfig):
        super().__init__()
        sizes = (in_features, *hidden)
        self.dense = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.batchnorm = nn.ModuleList(BatchNorm(h, eps=config.bn_eps, momentum=config.bn_momentum) for h in hidden)
        if activation == "dice":
            affine = config.dice == "tutorial"
            self.activation = nn.ModuleList(Dice(h, config.dice_eps, config.bn_momentum, affine) for h in hidden)
        elif activation == "prelu":
            self.activation = nn.ModuleList(nn.PReLU(num_parameters=1, init=0.25) for _ in hidden)
        else:
            raise ValueError(f"activation must be 'dice' or 'prelu', got {activation!r}")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, in] -> [N, hidden[-1]]; mask [N] selects the rows BatchNorm learns from."""
        for dense, batchnorm, activation in zip(self.dense, self.batchnorm, self.activation):
            x = batchnorm(dense(x), mask)
            x = self.dropout(activation(x, mask) if isinstance(activation, Dice) else activation(x))
        return x
