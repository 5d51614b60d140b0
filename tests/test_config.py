"""One configuration, one road: every DINConfig field is a train.py flag made
from its metadata, ModelConfig is the model group, and the resume set is one."""

import dataclasses
import json

import pytest

import train
from core.config import CHANGE_ON_RESUME, DINConfig, ModelConfig
from core.errors import ConfigError
from core.flags import flag


def test_every_setting_is_a_flag_with_its_help_and_default():
    for field in dataclasses.fields(DINConfig):
        assert field.metadata["help"], f"{field.name} has no help"
    args = train.parse_args(["--backend", "jax", "--out", "x", "--learning-rate", "0.01", "--mlp-hidden", "64", "8",
                             "--mask-padding", "--attention-norm", "softmax"])
    config = DINConfig(**train.given(args))
    assert config == DINConfig(learning_rate=0.01, mlp_hidden=(64, 8), mask_padding=True, attention_norm="softmax")
    # A flag not given keeps the field's default (absent from the namespace).
    assert train.given(train.parse_args(["--backend", "torch", "--out", "x"])) == {}


def test_choices_come_from_the_field_and_are_checked_twice(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(["--backend", "jax", "--out", "x", "--dice", "nope"])
    assert exit_.value.code == 2 and "--dice: invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="dice"):
        DINConfig(dice="nope")


def test_model_config_is_the_model_group():
    model_fields = [f.name for f in dataclasses.fields(DINConfig) if f.metadata["group"] == "model"]
    assert [f.name for f in dataclasses.fields(ModelConfig)] == model_fields
    config = DINConfig(embedding_dim=8, dice="paper")
    assert config.model == ModelConfig(**config.group("model")) and config.model.dice == "paper"


def test_resume_may_change_where_a_run_computes_only(capsys):
    assert CHANGE_ON_RESUME == {"mesh", "device", "input"}
    train.parse_args(["--resume", "r", "--mesh", "data=1", "--input", "stream"])  # accepted
    with pytest.raises(SystemExit):
        train.parse_args(["--resume", "r", "--learning-rate", "0.1"])
    assert f"drop {flag('learning_rate')}" in capsys.readouterr().err


def test_a_preset_is_a_starting_point_that_flags_override(capsys):
    args = train.parse_args(["--backend", "jax", "--out", "x", "--preset", "paper", "--embedding-dim", "32"])
    config = DINConfig(**train.given(args))
    assert (config.attention_hidden, config.mlp_hidden, config.embedding_dim) == ((80, 40), (200, 80), 32)
    assert DINConfig(**train.given(train.parse_args(["--backend", "jax", "--out", "x", "--preset", "paper"]))
                     ).embedding_dim == 12
    with pytest.raises(SystemExit):
        train.parse_args(["--resume", "r", "--preset", "paper"])
    assert "drop --preset" in capsys.readouterr().err


def test_a_config_written_before_a_setting_existed_keeps_its_old_meaning():
    """The sequential protocol's user id and low-rated history are on unless
    turned off (None); a config.json from before they existed meant off."""
    assert DINConfig().user_feature is None and DINConfig().low_rated_history is None
    old = json.loads(DINConfig().to_json())
    for name in ("user_feature", "low_rated_history"):
        del old["data"][name]
    config = DINConfig.from_json(json.dumps(old))
    assert config.user_feature is False and config.low_rated_history is False
    assert DINConfig.from_json(DINConfig().to_json()) == DINConfig()  # written now: round trip
