"""The torch backend of the shared loop: the model and Adam on one device,
weights and checkpoints. Mirrors din_jax/backend.py."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from core.config import DINConfig
from data.batches import Arrays, eval_batches
from data.schema import LABEL, FeatureSchema
from din_torch.input import batch_of
from din_torch.settings import check_computable
from din_torch.model import DIN, subnormals_flushed
from din_torch.steps import MiniBatchAwareL2, make_optimizer, make_schedule, train_step


class TorchBackend:
    """The shared loop's backend interface (see training/backend.py) for torch."""

    name = "torch"
    primary = True

    def __init__(
        self,
        schema: FeatureSchema,
        config: DINConfig,
        mba_scales: dict[str, np.ndarray] | None = None,
    ):
        """mba_scales: lambda / n_j per table row (training/regularization.py), when config.mba_reg > 0.
        config.device: where to compute ("": cuda when available, else cpu)."""
        check_computable(config)
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(config.seed)  # Initialisation and dropout masks.
        self.model = DIN(schema, config.model).to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.schedule = make_schedule(self.optimizer, config)
        self.regularizer = None if mba_scales is None else MiniBatchAwareL2(schema, mba_scales, self.device)
        self.inputs = schema.inputs
        self.describe = f"torch {torch.__version__} on {self.device} ({torch.get_num_threads()} threads)"

    @subnormals_flushed()
    def train_batches(self, data: Arrays, batches: list[np.ndarray], progress: Callable[[int], None]) -> np.ndarray:
        losses = []
        for rows in batches:
            batch = batch_of(data, rows, self.inputs + (LABEL,), self.device)
            losses.append(train_step(self.model, self.optimizer, batch, self.regularizer, self.schedule))
            progress(len(rows))
        # One host sync per call, as in the JAX backend.
        return torch.stack(losses).double().cpu().numpy() if losses else np.zeros(0)  # [batches]

    @torch.no_grad()
    @subnormals_flushed()
    def predict(self, data: Arrays, batch_size: int) -> np.ndarray:
        self.model.eval()
        n = len(data[self.inputs[0]])
        logits = [self.model(batch_of(data, rows, self.inputs, self.device))[0] for rows in eval_batches(n, batch_size)]
        return torch.cat(logits).cpu().numpy()  # [N]

    @torch.no_grad()
    @subnormals_flushed()
    def attention(self, data: Arrays) -> dict[str, np.ndarray]:
        """Eval-mode attention weights {group: [N, T]} of every row of `data` (a small probe: one batch);
        {} with the histories pooled."""
        if self.model.config.pooling != "attention":
            return {}
        self.model.eval()
        _, intermediates = self.model(batch_of(data, np.arange(len(data[self.inputs[0]])), self.inputs, self.device))
        prefix = "attention_weights/"
        return {name[len(prefix):]: value.float().cpu().numpy() for name, value in intermediates.items()
                if name.startswith(prefix)}

    @torch.no_grad()
    def attention_norms(self) -> dict[str, float]:
        """The L2 norm of each attention unit's dense kernels {group: norm}."""
        return {group: float(sum(m.weight.double().square().sum() for m in unit.modules()
                                 if isinstance(m, torch.nn.Linear)).sqrt())
                for group, unit in self.model.attention.items()}

    def weights(self) -> dict[str, np.ndarray]:
        return {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = {name: torch.from_numpy(np.asarray(value)) for name, value in weights.items()}
        self.model.load_state_dict(state, strict=True)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's moments by parameter name ('mu/<name>', 'nu/<name>') and its
        step count ('count'); {} before the first step."""
        out = {}
        for name, parameter in self.model.named_parameters():
            state = self.optimizer.state.get(parameter)
            if state:
                out[f"mu/{name}"] = state["exp_avg"].detach().cpu().numpy().copy()
                out[f"nu/{name}"] = state["exp_avg_sq"].detach().cpu().numpy().copy()
                out["count"] = np.asarray(int(state["step"]), np.int64)
        return out

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Replaces Adam's moments and step count with optimizer_state's."""
        for name, parameter in self.model.named_parameters():
            self.optimizer.state[parameter] = {
                "step": torch.tensor(float(state["count"]), dtype=torch.float32, device=parameter.device),
                "exp_avg": torch.from_numpy(np.asarray(state[f"mu/{name}"])).to(parameter),
                "exp_avg_sq": torch.from_numpy(np.asarray(state[f"nu/{name}"])).to(parameter),
            }

    def save_state(self, path: str) -> None:
        """Model, Adam state and the RNG streams (dropout) into path/state.pt."""
        os.makedirs(path)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, os.path.join(path, "state.pt"))

    def load_state(self, path: str) -> None:
        state = torch.load(os.path.join(path, "state.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


Backend = TorchBackend
