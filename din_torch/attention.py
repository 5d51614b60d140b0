"""The torch attention unit: the candidate is the query, each history position
a key, an MLP scores each (query, key) pair over the padded [B, T]
positions; din_jax/attention.py mirrors it. Shapes: B, T, D (docs/design.md)."""

from __future__ import annotations

import math

import torch
from torch import nn

from core.config import DINConfig
from din_torch.layers import MLP


def masked_softmax(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Softmax of scores [B, T] over the positions where real [B, T] is True.

    Padded positions weigh exactly 0 and an all-padding row gets all-zero
    weights (not NaN); written out so that the Flax model computes the same
    float operations.
    """
    top = scores.masked_fill(~real, -math.inf).amax(dim=1, keepdim=True)  # [B, 1]
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    exp = torch.where(real, torch.exp(torch.where(real, scores - top, torch.zeros_like(scores))), torch.zeros_like(scores))
    return exp / exp.sum(dim=1, keepdim=True).clamp(min=1.0)  # the sum is >= 1 unless all padding


def pooled_history(keys: torch.Tensor, length: torch.Tensor, pooling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's BaseModel in place of the attention: keys [B, T, D], length [B]
    -> (the mean or sum of the real positions' keys [B, D], their weights [B, T]:
    1 / length or 1, 0 where padded)."""
    real = (torch.arange(keys.shape[1], device=keys.device) < length.unsqueeze(1)).to(keys.dtype)  # [B, T]
    weights = real / length.clamp(min=1).unsqueeze(1).to(keys.dtype) if pooling == "mean" else real
    return torch.einsum("bt,btd->bd", weights, keys), weights  # [B, D], [B, T]


class AttentionUnit(nn.Module):
    """Scores each history item against the query and sums the weighted items.

    The MLP sees concat(q, k, q - k, q * k) for every (example, position) row;
    its BatchNorm statistics are taken over all B * T rows, padded ones
    included (tutorial behaviour), or over the real positions only
    (config.mask_padding). Scores are scaled by 1 / sqrt(D) and turned into
    weights by a sigmoid (tutorial) or a softmax over the real positions
    (config.attention_norm); padded positions weigh exactly 0 either way.
    """

    def __init__(self, dim: int, config: DINConfig):
        super().__init__()
        self.config = config
        self.mlp = MLP(4 * dim, config.attention_hidden, "dice", config.attention_dropout, config)
        self.fc = nn.Linear(config.attention_hidden[-1], 1)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, length: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, D], keys [B, T, D], length [B] -> (interest [B, D], weights [B, T])."""
        batch, steps, dim = keys.shape
        queries = query.unsqueeze(1).expand(-1, steps, -1)  # [B, T, D]
        x = torch.cat([queries, keys, queries - keys, queries * keys], dim=-1)  # [B, T, 4D]
        real = torch.arange(steps, device=keys.device) < length.unsqueeze(1)  # [B, T]
        rows = real.reshape(batch * steps) if self.config.mask_padding else None  # [B*T]
        hidden = self.mlp(x.reshape(batch * steps, 4 * dim), rows)  # [B*T, H]
        scores = self.fc(hidden).reshape(batch, steps) / math.sqrt(dim)  # [B, T]
        if self.config.attention_norm == "softmax":
            weights = masked_softmax(scores, real)
        else:
            weights = torch.sigmoid(scores.masked_fill(~real, -math.inf))  # [B, T], 0 where padded
        interest = torch.einsum("bt,btd->bd", weights, keys)  # [B, D]
        return interest, weights
