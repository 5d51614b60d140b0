"""The Flax DIN, functional and jit-compiled, behind the backend interface
(training/backend.py): layers.py, attention.py, model.py, steps.py, input.py,
backend.py, inference.py, settings.py, file for file as din_torch/, plus mesh.py
(placement on a device mesh), packing.py (the attention's packed rows),
chunks.py (evaluation in cache-sized chunks) and dropout.py (hashed masks)."""

from din_jax.attention import AttentionUnit
from din_jax.backend import Backend, JaxBackend
from din_jax.settings import check, prepare
from din_jax.inference import Predictor
from din_jax.layers import MLP, BatchNorm, Dice
from din_jax.mesh import initialize_distributed
from din_jax.model import DIN, Embeddings
from din_jax.steps import TrainState, create_state, eval_step, make_optimizer, one_batch, train_step

__all__ = [
    "DIN", "MLP", "AttentionUnit", "Backend", "BatchNorm", "Dice", "Embeddings", "JaxBackend", "Predictor",
    "TrainState", "check", "create_state", "eval_step", "initialize_distributed", "make_optimizer", "prepare",
    "one_batch", "train_step",
]
