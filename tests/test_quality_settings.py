"""bench/quality.py --set FIELD=VALUE: typed by the DINConfig field, and a
value of the wrong type is one line, never a silent default."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # bench/ is scripts, not an installed package
from bench.quality import parse_setting  # noqa: E402


def test_settings_are_typed_by_their_field():
    assert parse_setting("learning_rate=0.01") == ("learning_rate", 0.01)
    assert parse_setting("mlp_hidden=64,8") == ("mlp_hidden", (64, 8))
    assert parse_setting("mask_padding=true") == ("mask_padding", True)
    assert parse_setting("user_feature=False") == ("user_feature", False)


@pytest.mark.parametrize("item, words", [
    ("mask_padding=ture", "mask_padding is true or false"),
    ("epochs=many", "epochs takes int"),
    ("mlp_hidden=64;8", "mlp_hidden takes comma-separated integers"),
    ("nonsense=1", "expected FIELD=VALUE"),
])
def test_a_bad_setting_is_one_line(item, words):
    with pytest.raises(SystemExit) as exit_:
        parse_setting(item)
    assert words in str(exit_.value) and "\n" not in str(exit_.value)
