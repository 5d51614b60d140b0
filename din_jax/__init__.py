"""The Flax DIN, functional and jit-compiled."""

from din_jax.model import DIN, MLP, AttentionUnit, BatchNorm, Dice, Embeddings
from din_jax.train import JaxBackend, TrainState, create_state, eval_step, make_optimizer, train_step, train_steps

__all__ = [
    "DIN", "MLP", "AttentionUnit", "BatchNorm", "Dice", "Embeddings",
    "JaxBackend", "TrainState", "create_state", "eval_step", "make_optimizer", "train_step", "train_steps",
]
