import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes, split_dev
from landmark.errors import UserError


def frame(counts):
    labels = np.repeat(list(counts), list(counts.values()))
    return pd.DataFrame({"id": [f"{index:016x}" for index in range(len(labels))], "landmark_id": labels})


def test_filter_keeps_classes_at_the_threshold():
    train = frame({5: 3, 9: 2, 1: 4, 7: 1})
    kept, classes = filter_classes(train, 3)
    assert classes.to_dict("list") == {"landmark_id": [1, 5], "class_index": [0, 1], "images": [4, 3]}
    assert sorted(kept["landmark_id"].unique()) == [1, 5] and len(kept) == 7


def test_split_is_stratified_seeded_and_disjoint():
    train = frame({1: 20, 2: 10, 3: 1})
    train_part, dev = split_dev(train, 0.2, seed=3)
    assert dev["landmark_id"].value_counts().to_dict() == {1: 4, 2: 2}
    assert set(train_part["id"]).isdisjoint(dev["id"]) and len(train_part) + len(dev) == len(train)
    again_train, again_dev = split_dev(train, 0.2, seed=3)
    assert again_dev["id"].tolist() == dev["id"].tolist()
    assert split_dev(train, 0.2, seed=4)[1]["id"].tolist() != dev["id"].tolist()


def test_read_labels_names_the_bad_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,landmark_id\na,1\nb,x\n")
    with pytest.raises(UserError, match=r"train.csv:3: landmark_id 'x' is not an integer"):
        read_labels(path)
    path.write_text("\ufeffid,landmark_id\na,1\n\nb,2\nc,7.0\n")
    with pytest.raises(UserError, match=r"train.csv:5: landmark_id '7.0' is not an integer"):
        read_labels(path)
    path.write_text("id,label\na,1\n")
    with pytest.raises(UserError, match=r"train.csv:1: missing column\(s\) landmark_id"):
        read_labels(path)


def test_filter_stage_error_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "filter:\n  min_samples_per_class: 2\n  max_bad_fraction: 0.1\n  max_image_pixels: 1000\n"
    )
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/train.csv").write_text("id,landmark_id\na,1.5\n")
    result = subprocess.run(
        [sys.executable, "-m", "stages.filter", "raw", "out"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == "error: raw/train.csv:2: landmark_id '1.5' is not an integer; fix or remove the row\n"
    assert not (tmp_path / "out").exists()
