"""The PyTorch reference DIN (Zhou et al., KDD 2018) with the tutorial's
semantics: embeddings, an attention unit per attention group
(din_torch/attention.py), then an MLP to one logit (din_torch/layers.py).
Shapes: the letters of docs/design.md.

Classes mirror din_jax's name for name (Embeddings, Dice, MLP,
AttentionUnit, DIN), so `inference/convert.py` is a short table of renames.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from core.config import PAPER_EMBEDDING_STD, DINConfig
from data.schema import AttentionGroup, FeatureSchema
from din_torch.attention import AttentionUnit, pooled_history
from din_torch.layers import MLP

Batch = dict[str, torch.Tensor]


@contextlib.contextmanager
def subnormals_flushed():
    """Computes with subnormal floats flushed to zero, as XLA does on a CPU: a
    CPU computes on them at a fraction of its speed, and weights that decay
    towards zero pass through them (docs/performance.md). The mode is the
    thread's floating-point state, so it is set for the backend's own work
    only and cleared after (other code in the process, e.g. a property test
    drawing subnormal floats, needs them); a no-op where the platform has no
    such mode."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def example_batch(schema: FeatureSchema, size: int = 2) -> Batch:
    """All-padding inputs of `size` rows (ids 0, numbers 0), in `schema.inputs`
    order: what the exports trace (din_jax.model.example_batch's twin)."""
    batch = {f.name: torch.zeros(size, dtype=torch.int32) for f in schema.categorical}
    batch |= {f.name: torch.zeros(size, f.max_len, dtype=torch.int32) for f in schema.sequence}
    batch |= {name: torch.zeros(size) for name in schema.numeric}
    return {name: batch[name] for name in schema.inputs}


class Embeddings(nn.Module):
    """One table per categorical and sequence feature (a shared history uses its
    query's table, see FeatureSchema.shared); row 0 is padding.

    nn.Embedding's default init is N(0, 1) with the padding row zeroed, and
    padding_idx keeps that row's gradient at zero (docs/model.md, the initialisation).
    """

    def __init__(self, schema: FeatureSchema, embedding_dim: int):
        super().__init__()
        self.schema = schema
        self.tables = nn.ModuleDict(
            {f.name: nn.Embedding(f.vocab_size, embedding_dim, padding_idx=0) for f in schema.tables}
        )

    def forward(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        return self.tables[self.schema.table_of(name)](ids)  # [...] -> [..., E]


class DIN(nn.Module):
    """Deep Interest Network: embeddings, pooling, attention, then an MLP to one logit."""

    def __init__(self, schema: FeatureSchema, config: DINConfig):
        super().__init__()
        self.schema = schema
        self.config = config
        self.embeddings = Embeddings(schema, config.embedding_dim)
        # With config.pooling "mean" or "sum" (the paper's BaseModel) the histories are pooled: no attention unit.
        units = schema.attention_groups if config.pooling == "attention" else ()
        self.attention = nn.ModuleDict({g.name: AttentionUnit(len(g.pairs) * config.embedding_dim, config) for g in units})
        self.mlp = MLP(schema.mlp_input_dim(config.embedding_dim), config.mlp_hidden, "prelu", config.mlp_dropout, config)
        self.final = nn.Linear(config.mlp_hidden[-1], 1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The tutorial's initialisation (docs/model.md; embeddings keep nn.Embedding's N(0, 1)), or
        with config.init 'paper' the CTR libraries' small one: embeddings
        N(0, 1e-4^2) and zero Linear biases."""
        paper = self.config.init == "paper"
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight)  # bound sqrt(6 / fan_in)
                nn.init.zeros_(module.bias) if paper else nn.init.normal_(module.bias)
            elif isinstance(module, nn.BatchNorm1d) and module.affine:
                nn.init.normal_(module.weight, mean=1.0, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and paper:
                nn.init.normal_(module.weight, std=PAPER_EMBEDDING_STD)
                module.weight[module.padding_idx].zero_()

    def _pool(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Max over the sequence [B, T] -> [B, E]; with mask_padding, over real positions only."""
        vectors = self.embeddings(name, ids)  # [B, T, E]
        if not self.config.mask_padding:
            return vectors.max(dim=1).values  # padding takes part as zero vectors (tutorial)
        real = (ids != 0).unsqueeze(-1)  # [B, T, 1]
        pooled = vectors.masked_fill(~real, -math.inf).max(dim=1).values  # [B, E]
        return torch.where(real.any(dim=1), pooled, torch.zeros_like(pooled))  # all padding -> 0

    def _group_inputs(self, group: AttentionGroup, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        query = torch.cat([self.embeddings(q, batch[q]) for q in group.queries], dim=-1)  # [B, D]
        keys = torch.cat([self.embeddings(h, batch[h]) for h in group.histories], dim=-1)  # [B, T, D]
        # The usable length is the shortest of the pair histories' real lengths.
        lengths = torch.stack([(batch[h] != 0).sum(dim=1) for h in group.histories], dim=1)  # [B, pairs]
        return query, keys, lengths.min(dim=1).values  # [B]

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: feature name -> [B] or [B, T] tensor. Returns (logits [B], intermediates)."""
        first = batch[self.schema.embedded[0].name] if self.schema.embedded else batch[self.schema.numeric[0]]
        if self.training and first.shape[0] == 1:
            raise ValueError("DIN cannot train on a batch of one: BatchNorm needs more than one row per feature")
        dtype = self.final.weight.dtype
        inputs = [batch[name].to(dtype).unsqueeze(1) for name in self.schema.numeric]  # each [B, 1]
        inputs += [self.embeddings(f.name, batch[f.name]) for f in self.schema.categorical]  # each [B, E]
        inputs += [self._pool(f.name, batch[f.name]) for f in self.schema.pooled]  # each [B, E]
        intermediates: dict[str, torch.Tensor] = {}
        for group in self.schema.attention_groups:
            query, keys, length = self._group_inputs(group, batch)
            if self.config.pooling == "attention":
                interest, weights = self.attention[group.name](query, keys, length)
            else:
                interest, weights = pooled_history(keys, length, self.config.pooling)
            inputs.append(interest)  # [B, D]
            intermediates[f"attention_weights/{group.name}"] = weights  # [B, T]
            intermediates[f"interest/{group.name}"] = interest
        mlp_input = torch.cat(inputs, dim=1)  # [B, F]
        logits = self.final(self.mlp(mlp_input)).squeeze(1)  # [B]; squeeze(1) keeps B = 1 a vector
        intermediates["mlp_input"] = mlp_input
        return logits, intermediates
