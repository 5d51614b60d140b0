"""The PyTorch reference DIN."""

from din_torch.model import DIN, MLP, AttentionUnit, Dice, Embeddings
from din_torch.train import TorchBackend, make_optimizer, train_step

__all__ = ["DIN", "MLP", "AttentionUnit", "Dice", "Embeddings", "TorchBackend", "make_optimizer", "train_step"]
