"""Weight conversion between the torch and Flax DIN, both ways, by rules.

A torch state_dict name and a Flax variable path differ in three regular ways:

  1. containers: torch's `dense.0` / `tables.movieId` / `attention.liked` is
     Flax's `dense_0` / `tables_movieId` / `attention_liked` (flax names list
     and dict entries `<attribute>_<key>`);
  2. the leaf: an ordered table below (Linear `weight` is a transposed
     `kernel`, BatchNorm `weight` is `scale`, PReLU's [1] slope is a scalar...);
  3. the collection: buffers live in `batch_stats`, parameters in `params`.

The rules are driven by the Flax variables' paths, so any schema (features,
attention groups, hidden sizes) converts. A name without a rule, a missing or
extra name, or a wrong shape is an error that names it. Values are converted
exactly (no arithmetic but transposes and reshapes), so torch -> flax -> torch
is bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

# flax is imported where a nested tree is needed: converting a JAX run's flat
# weights to torch (`names_to_torch`) must work where only torch is installed.

# Flax names a list/dict entry `<attribute>_<key>`; torch nests `<attribute>.<key>`.
CONTAINERS = ("tables", "attention", "dense", "batchnorm", "activation")


def _transpose(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.T)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _scalar(x: np.ndarray) -> np.ndarray:
    return x.reshape(())


def _vector(x: np.ndarray) -> np.ndarray:
    return x.reshape(1)


# (flax collection, flax leaf, torch leaf, flax -> torch, torch -> flax), first match wins.
LEAF_RULES: tuple[tuple[str, str, str, Callable, Callable], ...] = (
    ("params", "kernel", "weight", _transpose, _transpose),  # Linear: [in, out] vs [out, in]
    ("params", "embedding", "weight", _same, _same),  # Embedding
    ("params", "scale", "weight", _same, _same),  # BatchNorm affine weight
    ("params", "bias", "bias", _same, _same),
    ("params", "alpha", "alpha", _same, _same),  # Dice
    ("params", "negative_slope", "weight", _vector, _scalar),  # PReLU: [1] vs []
    ("batch_stats", "mean", "running_mean", _same, _same),
    ("batch_stats", "var", "running_var", _same, _same),  # both unbiased running variance
    ("batch_stats", "num_batches_tracked", "num_batches_tracked", _same, _same),
)


def _module_path(segment: str) -> str:
    for container in CONTAINERS:
        if segment.startswith(container + "_"):
            return f"{container}.{segment[len(container) + 1:]}"
    return segment


def to_names(variables: dict[str, Any]) -> dict[str, np.ndarray]:
    """Nested Flax variables -> {'params/embeddings/tables_x/embedding': array}: the
    names a JAX run directory's model.safetensors uses."""
    from flax import traverse_util

    return {name: np.array(value) for name, value in traverse_util.flatten_dict(variables, sep="/").items()}


def from_names(weights: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `to_names`."""
    from flax import traverse_util

    return traverse_util.unflatten_dict(dict(weights), sep="/")


def torch_name(path: tuple[str, ...]) -> tuple[str, Callable, Callable]:
    """Flax path ('params', ..., leaf) -> (torch name, flax->torch fn, torch->flax fn)."""
    collection, *modules, leaf = path
    for rule_collection, flax_leaf, torch_leaf, to_torch, to_flax in LEAF_RULES:
        if collection == rule_collection and leaf == flax_leaf:
            return ".".join([*(_module_path(m) for m in modules), torch_leaf]), to_torch, to_flax
    raise KeyError(f"no conversion rule for Flax variable {'/'.join(path)!r}")


def flax_to_torch(variables: dict[str, Any]) -> dict[str, np.ndarray]:
    """Flax {'params', 'batch_stats'} -> torch state_dict (numpy arrays)."""
    return names_to_torch(to_names(variables))


def names_to_torch(weights: dict[str, Any]) -> dict[str, np.ndarray]:
    """A JAX run's flat weights ('params/final/kernel': array) -> torch state_dict."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        torch_key, to_torch, _ = torch_name(tuple(name.split("/")))
        out[torch_key] = np.array(to_torch(np.asarray(value)), copy=True)
    return out


def torch_to_flax(state_dict: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """torch state_dict -> Flax variables shaped like `template` (e.g. `model.init`'s).

    Every template variable must be found with the right shape and every
    state_dict entry used; dtypes follow the state_dict.
    """
    from flax import linen as nn, traverse_util

    # Copies: a torch tensor's .numpy() shares memory, and torch updates its
    # running statistics in place.
    state = {
        name: value.detach().cpu().numpy().copy() if hasattr(value, "detach") else np.array(value, copy=True)
        for name, value in state_dict.items()
    }
    flat: dict[tuple[str, ...], np.ndarray] = {}
    used: set[str] = set()
    for path, expected in traverse_util.flatten_dict(nn.unbox(template)).items():  # tables come boxed (logical axes)
        name, _, to_flax = torch_name(path)
        if name not in state:
            raise KeyError(f"torch state_dict has no {name!r} (for Flax {'/'.join(path)!r})")
        shape = tuple(expected.shape)  # an array or a jax.ShapeDtypeStruct
        value = to_flax(state[name]) if state[name].size == math.prod(shape) else state[name]
        if value.shape != shape:
            raise ValueError(
                f"shape mismatch for {name!r}: torch {state[name].shape} cannot be Flax {'/'.join(path)!r} {shape}"
            )
        flat[path] = value
        used.add(name)
    extra = sorted(set(state) - used)
    if extra:
        raise KeyError(f"torch state_dict entries with no Flax variable: {extra}")
    return traverse_util.unflatten_dict(flat)


def to_backend(weights: dict[str, Any], trained_by: str, backend: str, template: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A run's weights (by the names of the backend that trained it) as `backend`'s
    Predictor takes them: the torch state_dict, or nested Flax variables
    shaped like `template()` (called only when torch weights go to JAX)."""
    if backend == "torch":
        return dict(weights) if trained_by == "torch" else names_to_torch(weights)
    return from_names(weights) if trained_by == "jax" else torch_to_flax(weights, template())
