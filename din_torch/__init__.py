"""The PyTorch reference DIN, behind the backend interface (training/backend.py):
model.py, steps.py, input.py, backend.py, inference.py, file for file as din_jax/."""

from din_torch.backend import Backend, TorchBackend, check, initialize_distributed, prepare
from din_torch.inference import Predictor
from din_torch.model import DIN, MLP, AttentionUnit, Dice, Embeddings
from din_torch.steps import make_optimizer, train_step

__all__ = ["DIN", "MLP", "AttentionUnit", "Backend", "Dice", "Embeddings", "Predictor", "TorchBackend", "check", "initialize_distributed", "prepare",
           "make_optimizer", "train_step"]
