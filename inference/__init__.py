"""Using a trained run: score raw rows, read attention, evaluate, export for serving."""

from inference.model import TrainedModel, load_run

__all__ = ["TrainedModel", "load_run"]
