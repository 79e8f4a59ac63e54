import hashlib

import numpy as np
import pandas as pd
from PIL import Image

from landmark.data.layout import image_path, read_labels
from landmark.data.synthetic import class_sizes, generate
from landmark.settings import Synthetic
from tests.conftest import TINY_SYNTHETIC


def test_class_sizes_follow_a_power_law():
    sizes = class_sizes(40, 150, 4, 0.6)
    assert sizes[0] == 150 and sizes[1] == round(150 * 2**-0.6) and sizes[-1] == round(150 * 40**-0.6)
    assert class_sizes(40, 150, 20, 0.6)[-1] == 20
    assert np.all(np.diff(sizes) <= 0)


def test_layout_and_files(tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    assert len(train) == class_sizes(6, 12, 2, 1.0).sum() and train["landmark_id"].nunique() == 6
    assert train["id"].str.fullmatch(r"[0-9a-f]{16}").all() and train["id"].is_unique
    for image_id in train["id"][:5]:
        path = image_path(tiny_dataset, "train", image_id)
        assert path.parts[-4:-1] == tuple(image_id[:3])
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (32, 32) and image.mode == "RGB"
    test = pd.read_csv(tiny_dataset / "test.csv", dtype=str)
    assert all(image_path(tiny_dataset, "test", image_id).exists() for image_id in test["id"])
    sample = pd.read_csv(tiny_dataset / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(sample.columns) == ["id", "landmarks"] and sample["id"].tolist() == test["id"].tolist()


def test_the_non_landmark_pool_is_apart_from_the_test_set(tiny_dataset):
    pool = pd.read_csv(tiny_dataset / "nonlandmark.csv", dtype=str)["id"]
    assert len(pool) == TINY_SYNTHETIC["num_nonlandmark_images"] and pool.is_unique
    test = set(pd.read_csv(tiny_dataset / "test.csv", dtype=str)["id"])
    train = set(read_labels(tiny_dataset / "train.csv")["id"])
    assert not (set(pool) & test) and not (set(pool) & train)
    assert all(image_path(tiny_dataset, "nonlandmark", image_id).exists() for image_id in pool)


def test_solution_marks_most_test_images_as_non_landmarks(tiny_dataset):
    solution = pd.read_csv(tiny_dataset / "solution.csv", dtype=str, keep_default_na=False)
    assert list(solution.columns) == ["id", "landmarks", "Usage"]
    landmarks = solution["landmarks"] != ""
    assert landmarks.sum() == 5  # 25% of 20
    known = set(read_labels(tiny_dataset / "train.csv")["landmark_id"].astype(str))
    assert set(solution.loc[landmarks, "landmarks"]) <= known
    assert set(solution["Usage"]) <= {"Public", "Private", "Ignored"}


def test_same_seed_same_bytes(tmp_path, tiny_dataset):
    generate(tmp_path / "again", Synthetic(**TINY_SYNTHETIC))

    def digest(root):
        files = sorted(path for path in root.rglob("*") if path.is_file())
        return [(path.relative_to(root).as_posix(), hashlib.md5(path.read_bytes()).hexdigest()) for path in files]

    assert digest(tmp_path / "again") == digest(tiny_dataset)
