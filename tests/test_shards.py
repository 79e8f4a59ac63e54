"""Tar shards: WebDataset layout, every image's bytes back by id, shuffled, reproducible, and training from
shards equals training from the loose files."""

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from landmark.data.layout import image_path, read_labels
from landmark.data.prepare import filter_classes, split_dev
from landmark.data.shards import ShardReader, image_reader, pack, packed_ids
from landmark.errors import UserError
from landmark.train import TrainingData, TrainingJob, train_variant
from tests.params_file import params_with
from tests.test_resume import RUNTIME, VARIANT, typed

ROOT = Path(__file__).parents[1]


def test_shards_are_webdataset_tars_whose_index_gives_back_every_image(tmp_path, tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    index = pack(tiny_dataset, "train", train, tmp_path / "shards", shard_bytes=4000, seed=0)
    shards = sorted((tmp_path / "shards/train").glob("shard-*.tar"))
    assert len(shards) == index["shard"].max() + 1 > 2
    assert not (tmp_path / "shards/train.partial").exists()

    members = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                members.append((member.name, tar.extractfile(member).read()))
    labels = dict(zip(train["id"], train["landmark_id"], strict=True))
    assert [name for name, _ in members[::2]] == [f"{image_id}.jpg" for image_id in index["id"]]
    assert [name for name, _ in members[1::2]] == [f"{image_id}.cls" for image_id in index["id"]]
    assert all(int(data) == labels[name[:-4]] for name, data in members[1::2])
    assert sorted(index["id"]) == sorted(train["id"]) and index["id"].tolist() != train["id"].tolist()  # shuffled

    reader = image_reader(tmp_path / "shards", "train", train["id"])
    assert isinstance(reader, ShardReader)
    for position, image_id in enumerate(train["id"]):
        assert reader.read(position) == image_path(tiny_dataset, "train", image_id).read_bytes()
    with pytest.raises(UserError, match=r"index.csv: 1 image\(s\) not in it, e.g. nope; rerun the stage that wrote"):
        image_reader(tmp_path / "shards", "train", [train["id"].iloc[0], "nope"])
    # where an image may be missing (a test shard not downloaded), it reads as a missing file does
    tolerant = image_reader(tmp_path / "shards", "train", ["nope", train["id"].iloc[1]], missing_ok=True)
    with pytest.raises(FileNotFoundError):
        tolerant.read(0)
    assert tolerant.read(1) == reader.read(1)
    # a worker is sent the places of its own images only
    part = reader.take(np.arange(2, 4))
    assert len(part) == 2 and [part.read(0), part.read(1)] == [reader.read(2), reader.read(3)]


def test_packing_is_reproducible_and_replaces_the_old_shards(tmp_path, tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    pack(tiny_dataset, "train", train, tmp_path / "a", shard_bytes=10**6, seed=3)
    pack(tiny_dataset, "train", train, tmp_path / "b", shard_bytes=4000, seed=3)
    pack(tiny_dataset, "train", train, tmp_path / "b", shard_bytes=10**6, seed=3)  # overwrites the 4000-byte ones
    assert sorted(path.name for path in (tmp_path / "b/train").iterdir()) == ["index.csv", "shard-000000.tar"]
    for name in ("index.csv", "shard-000000.tar"):
        assert (tmp_path / "a/train" / name).read_bytes() == (tmp_path / "b/train" / name).read_bytes()


def test_training_from_shards_equals_training_from_the_loose_files(tmp_path, tiny_dataset, mlflow_store):
    kept, classes = filter_classes(read_labels(tiny_dataset / "train.csv"), 4)
    train, dev = split_dev(kept, classes["landmark_id"], 0.25, 0.0, seed=0)
    pack(tiny_dataset, "train", kept, tmp_path / "shards", shard_bytes=3000, seed=0)
    variant = VARIANT | {"steps": 3}
    runtime = RUNTIME | {"num_workers": 2, "eval_every": 3, "checkpoint_every": 10}
    results = {}
    for name, root in {"loose": tiny_dataset, "shards": tmp_path / "shards"}.items():
        data = TrainingData(root, train, dev, classes)
        metrics = train_variant(
            TrainingJob(name, *typed(variant, runtime), data, tmp_path / f"{name}.pt", tmp_path / "plots")
        )
        results[name] = metrics, torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"]
    (loose, loose_state), (shards, shards_state) = results["loose"], results["shards"]
    assert loose["loss"] == shards["loss"] and loose["gap"] == shards["gap"]
    assert all(torch.equal(loose_state[key], shards_state[key]) for key in loose_state)


def test_pack_stage_packs_usable_test_images_and_keeps_every_test_id(tmp_path, tiny_dataset):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(tiny_dataset), str(raw)], check=True)
    test = pd.read_csv(raw / "test.csv", dtype=str)
    broken = test["id"].iloc[0]
    image_path(raw, "test", broken).write_bytes(b"not a jpeg")
    packing = {"shard_size_mb": 0.002, "seed": 0, "max_image_pixels": 89478485}
    (tmp_path / "params.yaml").write_text(params_with(pack=packing))
    result = subprocess.run(
        [sys.executable, "-m", "stages.pack", "raw", "raw/train.csv", "raw/nonlandmark.csv", "shards"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(test) - 1} of {len(test)} test images" in result.stdout
    pool = pd.read_csv(raw / "nonlandmark.csv", dtype=str)["id"]
    assert f"{len(pool)} non-landmark photos" in result.stdout
    assert sorted(packed_ids(tmp_path / "shards", "nonlandmark")) == sorted(pool)
    assert pd.read_csv(tmp_path / "shards/test.csv", dtype=str)["id"].tolist() == test["id"].tolist()
    assert (tmp_path / "shards/solution.csv").read_bytes() == (raw / "solution.csv").read_bytes()
    assert sorted(packed_ids(tmp_path / "shards", "test")) == sorted(test["id"].iloc[1:])
    assert packed_ids(raw, "test") is None
