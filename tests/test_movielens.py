import numpy as np
import pytest

from core.config import DINConfig
from core.errors import DataError
from data.schema import LABEL, USER
from data.sources.tutorial import load_splits, read_tutorial_csv

HEADER = "userId,movieId,ratting,timestamp,last,histHighRatedMovieIds,negHistMovieIds,gender,age,occupation,zipCode,title,genres,label"
ROW = '1,48,5,978824351,1.0,1545|527,393|2562,F,1,10,48067,"Pocahontas (1995)",Animation|Musical,1'


def write(tmp_path, *lines, name="train.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_reads_a_valid_row(tmp_path):
    out = read_tutorial_csv(write(tmp_path, HEADER, ROW))
    assert out["movieId"].tolist() == ["48"]
    assert out["histHighRatedMovieIds"].tolist() == ["1545|527"]
    assert out["age"].tolist() == [1.0] and out[LABEL].tolist() == [1.0] and out[USER].tolist() == [1]


@pytest.mark.parametrize(
    "row, message",
    [
        (ROW.replace(",F,1,", ",F,old,"), r"line 3, column 'age': not a number \(value 'old'\)"),
        (ROW.replace(",F,1,", ",F,2_5,"), r"line 3, column 'age': not a number \(value '2_5'\)"),
        (ROW.replace(",F,1,", ",F,inf,"), r"line 3, column 'age': not a finite number"),
        (ROW[:-1] + "2", r"line 3, column 'label': label must be 0 or 1"),
        (ROW.replace("1545|527", "1545||527"), r"line 3, column 'histHighRatedMovieIds': empty term"),
        ("x" + ROW, r"line 3, column 'userId': user id must be an integer"),
        ("1_0" + ROW[1:], r"line 3, column 'userId': user id must be an integer \(value '1_0'\)"),
        (ROW + ",extra", r"line 3: 15 fields, the header has 14"),
        (ROW.rsplit(",", 1)[0], r"line 3: 13 fields, the header has 14"),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, row, message):
    path = write(tmp_path, HEADER, ROW, row)
    with pytest.raises(DataError, match=message) as error:
        read_tutorial_csv(path)
    assert path in str(error.value)


def test_missing_file_column_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_tutorial_csv(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\]"):
        read_tutorial_csv(write(tmp_path, HEADER.rsplit(",", 1)[0], ROW.rsplit(",", 1)[0]))
    with pytest.raises(DataError, match="empty file"):
        read_tutorial_csv(write(tmp_path, "", name="blank_line.csv"))
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_tutorial_csv(str(tmp_path / "blank.csv"))
    with pytest.raises(DataError, match="no data rows"):
        read_tutorial_csv(write(tmp_path, HEADER, name="header_only.csv"))


def test_empty_history_and_missing_age_follow_the_spec(tmp_path):
    rows = [ROW.replace("1,48,", f"{u},48,", 1) for u in range(2, 12)]
    odd = ROW.replace("1,48,", "99,48,", 1).replace("1545|527", "").replace(",F,1,", ",F,,")
    write(tmp_path, HEADER, *rows, odd)
    write(tmp_path, HEADER, odd, name="test.csv")
    splits = load_splits(str(tmp_path), DINConfig(valid_fraction=0.0, min_count=1))
    test = splits.test
    assert test["histHighRatedMovieIds"].tolist() == [[0, 0]]  # empty history: all padding
    assert np.isfinite(test["age"]).all()  # missing age: imputed with the train mean


def test_real_seed_split(seed_splits):
    schema = seed_splits.encoders.schema()
    assert schema.mlp_input_dim(16) == 113  # numeric 1 + 4 categorical x 16 + 2 sequences x 16 + the interest 16 (docs/model.md)
    train, valid, test = seed_splits.train, seed_splits.valid, seed_splits.test
    assert len(train[LABEL]) + len(valid[LABEL]) == 4832 and len(test[LABEL]) == 1208
    assert not set(train[USER]) & set(valid[USER])  # validation users are held out
    assert abs(len(valid[LABEL]) / 4832 - 0.1) < 0.01
    history = train["histHighRatedMovieIds"]
    assert history.shape[1] == 10 and history.dtype == np.int32
    # Right-padded: no real id after a padding position.
    assert not np.any((history[:, :-1] == 0) & (history[:, 1:] != 0))


def test_valid_on_test_uses_the_test_split(seed_data_dir):
    splits = load_splits(seed_data_dir, DINConfig(valid_on_test=True))
    assert len(splits.train[LABEL]) == 4832
    np.testing.assert_array_equal(splits.valid[USER], splits.test[USER])
