"""The Flax DIN, functional and jit-compiled, behind the backend interface
(training/backend.py): model.py, steps.py, input.py, backend.py, inference.py,
file for file as din_torch/, plus mesh.py (placement on a device mesh)."""

from din_jax.backend import Backend, JaxBackend, check, prepare
from din_jax.inference import Predictor
from din_jax.mesh import initialize_distributed
from din_jax.model import DIN, MLP, AttentionUnit, BatchNorm, Dice, Embeddings
from din_jax.steps import TrainState, create_state, eval_step, make_optimizer, train_step, train_steps

__all__ = [
    "DIN", "MLP", "AttentionUnit", "Backend", "BatchNorm", "Dice", "Embeddings", "JaxBackend", "Predictor",
    "TrainState", "check", "prepare", "initialize_distributed", "create_state", "eval_step", "make_optimizer", "train_step", "train_steps",
]
