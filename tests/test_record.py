"""A run's config.json names every value it trained with, so resume, predict and
export of it give the same results whatever the code's defaults become."""

import json

import numpy as np
import pandas as pd
import pytest

import export
import predict
import train
from core import schedule
from core.config import DINConfig
from data.sources import movielens, sequential

FLAGS = ["--epochs", "2", "--batch-size", "256", "--max-hist", "6", "--checkpoint-every", "40",
         "--lr-schedule", "cosine", "--no-progress"]


def settings(run) -> dict:
    with open(f"{run}/config.json", encoding="utf-8") as f:
        return {name: value for group in json.load(f).values() for name, value in group.items()}


def scores(run, data, out) -> pd.DataFrame:
    assert predict.main([str(run), "--data", data, "--out", str(out), "--no-progress"]) == 0
    return pd.read_csv(out)


def artifact_scores(run, out, batch) -> np.ndarray:
    import torch

    assert export.main([str(run), "--format", "torch", "--out", str(out)]) == 0
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        return program(*[torch.from_numpy(x) for x in batch]).numpy()


@pytest.mark.slow  # a run, its resume, two scorings and two exports
def test_a_default_run_records_every_value_and_outlives_a_change_of_defaults(ml1m_dir, tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="din"):
        assert train.main(["--backend", "torch", "--data", ml1m_dir, "--out", str(run), *FLAGS]) == 0
    recorded = settings(run)
    assert None not in recorded.values(), [k for k, v in recorded.items() if v is None]
    # The data's defaults and the values the training split decides, each concrete and named in the log.
    assert recorded["low_rated_history"] is True and recorded["user_feature"] is True
    assert recorded["attention_hidden"] == [80, 40] and recorded["attention_norm"] == "softmax"
    assert recorded["history_share"] == 1.0 and recorded["decay_steps"] > 0
    for words in ("--low-rated-history", "--user-feature", "--attention-norm softmax", "--mask-padding", "from the training split: "
                  f"--history-share 1.0, --decay-steps {recorded['decay_steps']}"):
        assert words in caplog.text, words

    metrics = json.loads((run / "metrics.json").read_text())
    before = scores(run, ml1m_dir, tmp_path / "before.csv")
    inputs = export_inputs(run, ml1m_dir)
    exported = artifact_scores(run, tmp_path / "export-before", inputs)

    # The code's defaults change: the data's (the tutorial's sizes, the sigmoid,
    # both features off), an unset feature's meaning, the schedule's length.
    monkeypatch.setattr(movielens.MovieLens, "defaults", lambda self, config: dict(
        embedding_dim=16, attention_hidden=(16, 8), mlp_hidden=(32, 16), attention_norm="sigmoid",
        low_rated_history=False, user_feature=False))
    monkeypatch.setattr(sequential, "enabled", lambda option: option is True)
    monkeypatch.setattr(schedule, "steps_per_epoch", lambda n, batch: 1)

    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    (run / "UNFINISHED").write_text("killed\n")
    assert train.main(["--resume", str(run), "--no-progress"]) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    timing = {"train_samples_per_s", "first_epoch_seconds"}  # wall time: the resume trained part of epoch 2
    assert {k: v for k, v in resumed.items() if k not in timing} == {k: v for k, v in metrics.items() if k not in timing}
    assert settings(run) == recorded
    pd.testing.assert_frame_equal(scores(run, ml1m_dir, tmp_path / "after.csv"), before)
    np.testing.assert_array_equal(artifact_scores(run, tmp_path / "export-after", inputs), exported)


def export_inputs(run, data) -> list[np.ndarray]:
    """The artifact's inputs (encoded, in the schema's order) for 64 test rows."""
    from data.datasets import raw_splits
    from inference import load_run

    model = load_run(str(run))
    inputs = model.encode(raw_splits(data, model.config)["test"])[1]
    return [inputs[name][:64] for name in model.schema.inputs]


def test_a_config_recorded_with_unset_features_reads_as_it_meant_then(ml1m_dir):
    """config.json files written before the defaults were resolved hold null for
    the two sequential features: on, what the protocol chose then."""
    old = json.loads(DINConfig(max_hist=4).to_json())
    assert old["data"]["user_feature"] is None and old["data"]["low_rated_history"] is None
    config = DINConfig.from_json(json.dumps(old))
    schema = movielens.MovieLens().load(ml1m_dir, config).encoders.schema()
    assert [g.name for g in schema.attention_groups] == ["liked", "disliked"]
    assert "userId" in [f.name for f in schema.categorical]
