"""How batches reach the device (mirrors din_jax/input.py): each batch's rows
are gathered from the split's (possibly memory-mapped) arrays on the host
and copied to the model's device; torch has no device-resident path."""

from __future__ import annotations

import numpy as np
import torch

from data.batches import Arrays, take
from din_torch.model import Batch


def to_tensors(arrays: Arrays, names: tuple[str, ...], device: torch.device) -> Batch:
    return {name: torch.from_numpy(np.ascontiguousarray(arrays[name])).to(device) for name in names}


def batch_of(data: Arrays, rows: np.ndarray, names: tuple[str, ...], device: torch.device) -> Batch:
    """data's `rows` of the `names` columns, as tensors on `device` ([B, ...] each)."""
    return to_tensors(take(data, rows), names, device)
