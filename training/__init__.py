"""The training loop shared by both backends, their interface, and the run directory."""

from training.backend import Backend, make_backend
from training.loop import fit

__all__ = ["Backend", "fit", "make_backend"]
