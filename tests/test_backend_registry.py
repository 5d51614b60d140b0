"""Each backend package exposes what the registry declares
(training/backend.py), and the export formats each Predictor writes are the
ones the registry routes to it."""

import pytest

from core.errors import ConfigError
from inference.export import ARTIFACTS
from training.backend import BACKENDS, EXPORTS, backend_module

DECLARED = ("Backend", "Predictor", "check", "prepare", "initialize_distributed")


@pytest.mark.parametrize("name", BACKENDS)
def test_a_backend_package_exposes_the_declared_names(name):
    module = backend_module(name)
    assert all(callable(getattr(module, attribute, None)) for attribute in DECLARED)
    assert callable(module.inference.variable_shapes)
    predictor = module.Predictor
    assert callable(predictor.write) and callable(predictor.__call__)
    assert set(predictor.artifacts) == {fmt for fmt, backend in EXPORTS.items() if backend == name}
    assert all(ARTIFACTS[fmt] == artifact for fmt, artifact in predictor.artifacts.items())


def test_torch_refuses_a_multi_host_job_in_one_line():
    with pytest.raises(ConfigError, match="--distributed is for a multi-host backend"):
        backend_module("torch").initialize_distributed()
