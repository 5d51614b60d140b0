"""The tutorial's input path, the peer bench/throughput.py times JAX's epoch
against: a torch DataLoader over one pandas row per item, each read column
by column with .iloc and its sequences padded per item."""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset

from data.schema import LABEL
from din_torch.backend import TorchBackend
from din_torch.steps import train_step


class TutorialDataset(Dataset):
    """The tutorial's input path: one pandas row per item, read column by column with .iloc."""

    def __init__(self, arrays: dict[str, np.ndarray], schema):
        self.frame = pd.DataFrame({
            **{name: arrays[name] for name in schema.numeric},
            **{f.name: arrays[f.name] for f in schema.categorical},
            # Unpadded sequences, padded per item as the tutorial does.
            **{f.name: [row[row > 0] for row in arrays[f.name]] for f in schema.sequence},
            LABEL: arrays[LABEL],
        })
        self.schema = schema

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict:
        record = {}
        for name in self.schema.numeric:
            record[name] = self.frame[name].iloc[index].astype(np.float32)
        for f in self.schema.categorical:
            record[f.name] = self.frame[f.name].iloc[index].astype(np.int64)
        for f in self.schema.sequence:
            sequence = self.frame[f.name].iloc[index]
            padded = np.zeros(f.max_len, np.int64)
            padded[: len(sequence)] = sequence
            record[f.name] = padded
        record[LABEL] = self.frame[LABEL].iloc[index].astype(np.float32)
        return record


def tutorial_epoch(backend: TorchBackend, loader: DataLoader) -> None:
    for batch in loader:
        if len(batch[LABEL]) > 1:
            train_step(backend.model, backend.optimizer, batch)
