import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes, split_dev, split_pool
from landmark.errors import UserError
from stages.train import training_data


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


def test_the_pool_is_cut_in_two_at_random_and_seeded():
    pool = pd.DataFrame({"id": [f"{number:016x}" for number in range(10)]})
    searched, held_out = split_pool(pool, 0.3, seed=1)
    assert len(held_out) == 3 and len(searched) == 7 and not set(searched["id"]) & set(held_out["id"])
    assert split_pool(pool, 0.3, seed=1)[1]["id"].tolist() == held_out["id"].tolist()
    assert split_pool(pool, 0.3, seed=2)[1]["id"].tolist() != held_out["id"].tolist()


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


def test_a_variant_of_its_own_threshold_trains_on_the_gallery_but_never_on_dev(tmp_path, tiny_dataset):
    gallery = read_labels(tiny_dataset / "train.csv")
    kept, classes = filter_classes(gallery, 4)
    train, dev = split_dev(kept, 0.25, seed=0)
    for name, frame in (("split/train.csv", train), ("split/dev.csv", dev), ("classes.csv", classes)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        frame.to_csv(tmp_path / name, index=False)
    gallery.to_csv(tmp_path / "gallery.csv", index=False)
    paper = training_data("filter", tmp_path / "split", tmp_path / "classes.csv", tmp_path / "gallery.csv")
    assert (
        paper[0]["id"].tolist() == train["id"].tolist()
        and paper[2]["landmark_id"].tolist() == classes["landmark_id"].tolist()
    )
    every, every_dev, every_classes = training_data(
        2, tmp_path / "split", tmp_path / "classes.csv", tmp_path / "gallery.csv"
    )
    assert set(every_classes["landmark_id"]) == set(gallery["landmark_id"]) > set(classes["landmark_id"])
    assert not set(every["id"]) & set(dev["id"]) and set(every["id"]) | set(dev["id"]) == set(gallery["id"])
    assert every_dev["id"].tolist() == dev["id"].tolist()
