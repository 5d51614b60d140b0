"""The PyTorch reference DIN, behind the backend interface (training/backend.py):
layers.py, attention.py, model.py, steps.py, input.py, backend.py,
inference.py, settings.py, file for file as din_jax/."""

from din_torch.attention import AttentionUnit
from din_torch.backend import Backend, TorchBackend
from din_torch.settings import check, initialize_distributed, prepare
from din_torch.inference import Predictor
from din_torch.layers import MLP, BatchNorm, Dice
from din_torch.model import DIN, Embeddings
from din_torch.steps import make_optimizer, train_step

__all__ = [
    "DIN", "MLP", "AttentionUnit", "Backend", "BatchNorm", "Dice", "Embeddings", "Predictor", "TorchBackend",
    "check", "initialize_distributed", "make_optimizer", "prepare", "train_step",
]
