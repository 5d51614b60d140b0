"""One configuration, one road: every DINConfig field is a train.py flag made
from its metadata, ModelConfig is the model group, and the resume set is one."""

import dataclasses
import json

import pytest

import train
from conftest import train_run
from core.config import CHANGE_ON_RESUME, PRESETS, DINConfig, ModelConfig
from core.errors import ConfigError
from core.flags import flag
from training.resolve import data_defaults


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


def sizes(config: DINConfig) -> tuple:
    return config.embedding_dim, config.attention_hidden, config.mlp_hidden


PAPER, TUTORIAL = (12, (80, 40), (200, 80)), (16, (16, 8), (32, 16))


def test_the_tutorial_preset_is_the_default_sizes():
    assert sizes(DINConfig()) == sizes(DINConfig(**PRESETS["tutorial"])) == TUTORIAL
    assert sizes(DINConfig(**PRESETS["paper"])) == PAPER


def test_raw_movielens_in_the_sequential_protocol_trains_with_the_papers_sizes_unless_told(ml1m_dir, tutorial_dir):
    """The quality study chose the paper's sizes and softmax attention there
    (and only there): a flag or --preset tutorial still wins, and other
    protocols and sources keep DINConfig's."""

    def resolved(folder: str, *flags: str) -> tuple:
        settings = train.given(train.parse_args(["--backend", "jax", "--out", "x", *flags]))
        config = data_defaults("jax", folder, DINConfig(**settings), settings)
        return *sizes(config), config.attention_norm

    assert resolved(ml1m_dir) == (*PAPER, "softmax")
    assert resolved(ml1m_dir, "--preset", "tutorial") == (*TUTORIAL, "softmax")
    assert resolved(ml1m_dir, "--attention-norm", "sigmoid") == (*PAPER, "sigmoid")
    assert resolved(ml1m_dir, "--embedding-dim", "8") == (8, (80, 40), (200, 80), "softmax")
    assert resolved(ml1m_dir, "--mlp-hidden", "32", "16") == (12, (80, 40), (32, 16), "softmax")
    assert resolved(ml1m_dir, "--protocol", "seed") == (*TUTORIAL, "sigmoid")
    assert resolved(tutorial_dir) == (*TUTORIAL, "sigmoid")


def test_raw_movielens_masks_padding_unless_told(ml1m_dir, tutorial_dir):
    """The paper's treatment of padding is raw MovieLens' default (the study in
    docs/results.md: within noise, and the JAX attention then skips padded
    positions); --no-mask-padding turns it off, other data keep it off."""
    def mask_padding(folder: str, *flags: str) -> bool:
        settings = train.given(train.parse_args(["--backend", "jax", "--out", "x", *flags]))
        return data_defaults("jax", folder, DINConfig(**settings), settings).mask_padding

    assert mask_padding(ml1m_dir) and not mask_padding(ml1m_dir, "--no-mask-padding")
    assert not mask_padding(ml1m_dir, "--protocol", "paper") and not mask_padding(tutorial_dir)
    assert mask_padding(tutorial_dir, "--mask-padding")


def test_a_run_records_the_sizes_it_took_from_its_data(ml1m_dir, tmp_path, caplog):
    """config.json holds what the run trained with, so resume, predict and export
    rebuild the same model whatever the defaults become."""
    with caplog.at_level("INFO", logger="din"):
        run = train_run(ml1m_dir, tmp_path / "run", "--max-hist", "6")
    with open(f"{run}/config.json", encoding="utf-8") as f:
        recorded = DINConfig.from_json(f.read())
    assert sizes(recorded) == PAPER and recorded.attention_norm == "softmax"
    assert "this data's defaults (a flag overrides each, --preset tutorial the sizes): --embedding-dim 12, " \
           "--attention-hidden 80 40, --mlp-hidden 200 80, --attention-norm softmax" in caplog.text


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


def test_a_config_with_one_weight_decay_reads_as_that_decay_in_every_group():
    """Runs written before the parameter groups recorded one `weight_decay`,
    coupled, on every parameter: they resume, predict and export as trained."""
    old = json.loads(DINConfig().to_json())
    for name in ("embedding_weight_decay", "attention_weight_decay", "mlp_weight_decay", "weight_decay_form"):
        del old["optimizer"][name]
    old["optimizer"]["weight_decay"] = 0.003
    config = DINConfig.from_json(json.dumps(old))
    assert config.weight_decays() == {"embedding": 0.003, "attention": 0.003, "mlp": 0.003}
    assert config.weight_decay_form == "coupled" and config.pooling == "attention"
    assert DINConfig(mba_reg=0.1).weight_decays()["embedding"] == 0.0  # the tables take the mini-batch aware L2


def test_help_shows_the_data_defaults_beside_the_configs(capsys):
    """--help names DINConfig's default and, where raw MovieLens sets its own,
    that one too (a user reading --embedding-dim's help sees 12 there)."""
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 16; raw MovieLens (sequential): 12)" in text
    assert "(default sigmoid; raw MovieLens (sequential): softmax)" in text
    assert "(default off; raw MovieLens (sequential): on)" in text  # --mask-padding
