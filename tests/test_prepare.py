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
from tests.params_file import params_with


def frame(counts):
    labels = np.repeat(list(counts), list(counts.values()))
    return pd.DataFrame({"id": [f"{index:016x}" for index in range(len(labels))], "landmark_id": labels})


def test_filter_keeps_classes_at_the_threshold():
    train = frame({5: 3, 9: 2, 1: 4, 7: 1})
    kept, classes = filter_classes(train, 3)
    assert classes.to_dict("list") == {"landmark_id": [1, 5], "class_index": [0, 1], "images": [4, 3]}
    assert sorted(kept["landmark_id"].unique()) == [1, 5] and len(kept) == 7


def test_split_is_stratified_seeded_and_disjoint():
    gallery = frame({1: 20, 2: 10, 3: 1})
    train_part, dev = split_dev(gallery, [1, 2], 0.2, 1.0, seed=3)
    assert dev["landmark_id"].value_counts().to_dict() == {1: 4, 2: 2}
    assert set(train_part["id"]).isdisjoint(dev["id"]) and len(train_part) + len(dev) == len(gallery) - 1
    again_train, again_dev = split_dev(gallery, [1, 2], 0.2, 1.0, seed=3)
    assert again_dev["id"].tolist() == dev["id"].tolist()
    assert split_dev(gallery, [1, 2], 0.2, 1.0, seed=4)[1]["id"].tolist() != dev["id"].tolist()


def test_dev_takes_the_long_tail_too_but_never_a_class_last_image():
    # kept: 1 (20 images), 4 (2 images: round(0.4) is 0, yet a kept class gives one); tail: 5, 6, 7, 8 (2-3), 3 (1)
    gallery = frame({1: 20, 4: 2, 5: 3, 6: 2, 7: 2, 8: 2, 3: 1})
    train, dev = split_dev(gallery, [1, 4], 0.2, 1.0, seed=0)
    assert dev["landmark_id"].value_counts().sort_index().to_dict() == {1: 4, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1}
    assert set(train["landmark_id"]) == {1, 4} and set(train["id"]).isdisjoint(dev["id"])
    half = split_dev(gallery, [1, 4], 0.2, 0.5, seed=0)[1]  # half the tail classes, each one image
    assert set(half["landmark_id"]) - {1, 4} < {5, 6, 7, 8} and len(set(half["landmark_id"]) - {1, 4}) == 2
    assert not len(split_dev(gallery, [1, 4], 0.0, 0.0, seed=0)[1])  # no dev set at all, when asked for none


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


@pytest.mark.parametrize(
    "listing,line",
    [
        ("id,landmark_id\na,1.5\n", "raw/train.csv:2: landmark_id '1.5' is not an integer; fix or remove the row"),
        (None, "raw/train.csv: no such file; run the download stage or check data.local.path"),
        (
            "id,landmark_id\n\xff\xfe,1\n",
            "raw/train.csv: not a readable CSV (In CSV column #0: CSV conversion "
            "error to large_string: invalid UTF8 data)",
        ),
    ],
    ids=["bad-row", "missing", "not-utf8"],
)
def test_filter_stage_error_is_one_line(tmp_path, listing, line):
    filtering = {"min_samples_per_class": 2, "max_bad_fraction": 0.1, "max_image_pixels": 1000}
    (tmp_path / "params.yaml").write_text(params_with(filter=filtering))
    (tmp_path / "raw").mkdir()
    if listing is not None:
        (tmp_path / "raw/train.csv").write_bytes(listing.encode("latin-1"))
    result = subprocess.run(
        [sys.executable, "-m", "stages.filter", "raw", "out"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {line}\n"
    assert not (tmp_path / "out").exists()


def test_a_variant_of_its_own_threshold_trains_on_the_gallery_but_never_on_dev(tmp_path, tiny_dataset):
    gallery = read_labels(tiny_dataset / "train.csv")
    kept, classes = filter_classes(gallery, 4)
    train, dev = split_dev(gallery, classes["landmark_id"], 0.25, 1.0, seed=0)
    assert not dev["landmark_id"].isin(classes["landmark_id"]).all()  # the tail gives dev images too
    for name, frame in (("split/train.csv", train), ("split/dev.csv", dev), ("classes.csv", classes)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        frame.to_csv(tmp_path / name, index=False)
    gallery.to_csv(tmp_path / "gallery.csv", index=False)
    paper, paper_dev, paper_classes = training_data(
        "filter", tmp_path / "split", tmp_path / "classes.csv", tmp_path / "gallery.csv"
    )
    assert paper["id"].tolist() == train["id"].tolist()
    assert paper_classes["landmark_id"].tolist() == classes["landmark_id"].tolist()
    paper_questions = dev[dev["landmark_id"].isin(classes["landmark_id"])]["id"].tolist()
    assert paper_dev["id"].tolist() == paper_questions  # the dev pass asks the filter's classes
    every, every_dev, every_classes = training_data(
        2, tmp_path / "split", tmp_path / "classes.csv", tmp_path / "gallery.csv"
    )
    assert set(every_classes["landmark_id"]) > set(classes["landmark_id"])
    assert not set(every["id"]) & set(dev["id"]) and set(every["id"]) | set(dev["id"]) <= set(gallery["id"])
    assert every_dev["id"].tolist() == paper_questions  # every row's dev pass asks the same questions
