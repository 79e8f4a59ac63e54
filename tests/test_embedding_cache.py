"""Embeddings cached per image: reused while the image, the model and the looks are unchanged, embedded again when
any of them changes; on the cache itself and through the embed stage."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from landmark.data.labels import LabelEncoding
from landmark.data.layout import image_path, read_labels
from landmark.embedding_cache import EmbeddingCache, fingerprint
from landmark.inference import Looks, TrainedModel, save_model
from landmark.models import create_model
from landmark.settings import Variant, parse
from tests.test_distributed import embed_command, embed_project
from tests.test_resume import VARIANT as RESUME_VARIANT
from tests.test_resume import environment

SETS = ("gallery", "dev", "holdout", "pool", "test")


def test_the_cache_finds_by_digest_the_latest_part_wins_and_a_query_needs_the_classifiers_answers(tmp_path):
    cache = EmbeddingCache(tmp_path, "one")
    with cache.adding(["a", "b"], 2, "gallery") as (vectors, answers):
        vectors[:] = [[1, 0], [0, 1]]
        answers[:] = [[-1, 0], [-1, 0]]  # embedded for search only
    cache = EmbeddingCache(tmp_path, "one")
    assert cache.find(["b", "c", "a"], classify=False).tolist() == [1, -1, 0]
    assert cache.find(["a"], classify=True).tolist() == [-1]  # no classifier answers kept for it
    with cache.adding(["a"], 2, "test") as (vectors, answers):
        vectors[:] = [[0.6, 0.8]]
        answers[:] = [[3, 0.9]]
    cache = EmbeddingCache(tmp_path, "one")
    rows = cache.find(["a", "b"], classify=False)
    found, classes, confidences = cache.take(rows)
    np.testing.assert_array_equal(found, np.float32([[0.6, 0.8], [0, 1]]))
    assert classes.tolist() == [3, -1] and confidences[0] == pytest.approx(0.9)
    assert cache.find(["a", "b"], classify=True).tolist() == [rows[0], -1]


def test_a_killed_part_is_not_read_and_other_models_caches_are_dropped(tmp_path):
    old = EmbeddingCache(tmp_path, "old")
    with old.adding(["a"], 2, "gallery") as (vectors, answers):
        vectors[:] = 1
    with pytest.raises(KeyboardInterrupt):
        with old.adding(["b"], 2, "test"):
            raise KeyboardInterrupt  # killed while it was written
    assert len(EmbeddingCache(tmp_path, "old")) == 1
    new = EmbeddingCache(tmp_path, "new")
    new.drop_others()
    assert [path.name for path in tmp_path.iterdir()] == ["new"]


def test_the_fingerprint_follows_the_weights_and_the_looks_not_the_files_bytes(tmp_path):
    variant = parse(Variant, RESUME_VARIANT, "variants.tiny")
    models = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"{len(models)}.pt"
        save_model(path, create_model(variant, 3), variant, "worker", LabelEncoding([1, 2, 3], [4, 4, 4]), run_id="")
        models.append(TrainedModel.load(path, torch.device("cpu")))
    looks = Looks((1.0,), False, None)
    assert fingerprint(models[0], looks) == fingerprint(models[1], looks)  # saved twice: the same weights
    assert fingerprint(models[0], looks) != fingerprint(models[2], looks)
    assert fingerprint(models[0], looks) != fingerprint(models[0], Looks((1.0,), True, None))
    assert fingerprint(models[0], looks) != fingerprint(models[0], Looks((1.0,), False, torch.bfloat16))


def run_embed(project) -> int:
    """Run the embed stage in project; returns how many images it embedded (not found in its cache)."""
    command = embed_command("model.pt", "out")
    result = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return int(re.search(r"(\d+) embedded now, \d+ found in cache", result.stdout).group(1))


def outputs(project) -> dict:
    return {
        name: (np.load(project / f"out/{name}.npy"), pd.read_csv(project / f"out/{name}.csv", dtype={"id": str}))
        for name in SETS
    }


def test_the_embed_stage_embeds_only_changed_images_and_everything_for_a_new_model(tmp_path, tiny_dataset):
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset)
    project = embed_project(tmp_path / "project", dataset, processes=1)
    embedded = run_embed(project)
    first = outputs(project)
    total = sum(len(frame) for _, frame in first.values())
    assert embedded == total  # the first run: every image
    parts = sorted((project / "cache").rglob("part-*"))
    assert run_embed(project) == 0  # a rerun: every image found
    assert sorted((project / "cache").rglob("part-*")) == parts  # and nothing added to the cache
    for name, (vectors, frame) in outputs(project).items():
        np.testing.assert_array_equal(vectors, first[name][0])
        pd.testing.assert_frame_equal(frame, first[name][1])

    # one train photo changed (a dev image or a gallery one): that one alone is embedded again
    train = read_labels(dataset / "train.csv")
    changed = train["id"].iloc[0]
    path = image_path(dataset, "train", changed)
    Image.open(path).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(path, "JPEG")
    embed_project(project, dataset, processes=1)  # repacked, as the pack stage would
    assert run_embed(project) == 1
    now = outputs(project)
    for name in SETS:
        ids = now[name][1]["id"]
        same = ids != changed
        np.testing.assert_array_equal(now[name][0][same.to_numpy()], first[name][0][same.to_numpy()])
        if (~same).any():
            assert not np.allclose(now[name][0][~same.to_numpy()], first[name][0][~same.to_numpy()])

    # another model: nothing is found, and the old model's cache is dropped
    trained = TrainedModel.load(project / "model.pt", torch.device("cpu"))
    torch.manual_seed(1)
    other = create_model(trained.variant, len(trained.labels))
    labels = LabelEncoding(trained.labels.landmark_ids, trained.labels.images)
    save_model(project / "model.pt", other, trained.variant, "worker", labels, run_id="")
    assert run_embed(project) == total
    assert len(list((project / "cache").iterdir())) == 1
