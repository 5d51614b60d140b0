"""The PyTorch reference DIN (Zhou et al., KDD 2018) with the tutorial's semantics.

Shape letters, used in every comment below:
  B  batch size
  T  history (sequence) length
  E  embedding width of one feature (config.embedding_dim)
  D  width of an attention group: pairs x E
  F  width of the main MLP's input (schema.mlp_input_dim(E))
  H  a hidden layer's width

Classes mirror `din_jax/model.py` name for name (Embeddings, Dice, MLP,
AttentionUnit, DIN), so `inference/convert.py` is a short table of renames.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from core.config import PAPER_EMBEDDING_STD, DINConfig
from data.schema import AttentionGroup, FeatureSchema

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
    padding_idx keeps that row's gradient at zero: the SPEC's scheme.
    """

    def __init__(self, schema: FeatureSchema, embedding_dim: int):
        super().__init__()
        self.schema = schema
        self.tables = nn.ModuleDict(
            {f.name: nn.Embedding(f.vocab_size, embedding_dim, padding_idx=0) for f in schema.tables}
        )

    def forward(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        return self.tables[self.schema.table_of(name)](ids)  # [...] -> [..., E]


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
        """The SPEC's initialisation (embeddings keep nn.Embedding's N(0, 1)), or
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
