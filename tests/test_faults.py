"""Fault injection: a small dataset salted with every kind of bad image GLDv2 holds, run through the stages."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from PIL import Image

from landmark.data.images import BadImage, open_rgb
from landmark.data.layout import image_path, read_labels
from landmark.data.prepare import drop_duplicate_ids
from landmark.errors import UserError
from landmark.train import TrainingData, TrainingJob, train_variant
from tests.params_file import params_with
from tests.test_resume import RUNTIME, TRAIN, VARIANT, typed

ROOT = Path(__file__).parents[1]


def encoded(image, format, **options):
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def salted_images():
    """id suffix → (bytes or None for a missing file, the reason expected, or None when usable)."""
    photo = Image.new("RGB", (40, 30), (200, 80, 20))
    jpeg = encoded(photo, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return {
        "truncated": (jpeg[: len(jpeg) // 2], "undecodable"),
        "garbage": (os.urandom(64), "not an image"),
        "empty": (b"", "empty file"),
        "huge": (encoded(Image.new("1", (12000, 9000)), "PNG"), "too large"),
        "missing": (None, "missing"),
        "gray": (encoded(photo.convert("L"), "JPEG"), None),
        "cmyk": (encoded(photo.convert("CMYK"), "JPEG"), None),
        "rgba_png": (encoded(photo.convert("RGBA"), "PNG"), None),
        "palette": (encoded(photo.convert("P"), "PNG"), None),
        "webp": (encoded(photo, "WEBP"), None),
        "rotated": (encoded(photo, "JPEG", exif=exif), None),
        "tiny": (encoded(Image.new("RGB", (1, 1)), "JPEG"), None),
    }


@pytest.fixture
def salted(tmp_path, tiny_dataset):
    """The tiny dataset plus one bad or odd image per case, all in its largest class."""
    raw = tmp_path / "data/raw"
    shutil.copytree(tiny_dataset, raw)
    train = pd.read_csv(raw / "train.csv", dtype=str)
    largest = train["landmark_id"].value_counts().index[0]
    rows = []
    for number, (case, (data, _)) in enumerate(salted_images().items()):
        image_id = f"{number:x}" * 3 + case[:13].ljust(13, "0")
        rows.append({"id": image_id, "landmark_id": largest, "case": case})
        if data is not None:
            path = image_path(raw, "train", image_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    cases = pd.DataFrame(rows)
    pd.concat([train, cases[["id", "landmark_id"]]]).to_csv(raw / "train.csv", index=False)
    return tmp_path, cases


def run_filter(project, max_bad_fraction):
    filtering = {"min_samples_per_class": 4, "max_bad_fraction": max_bad_fraction, "max_image_pixels": 89478485}
    (project / "params.yaml").write_text(params_with(filter=filtering))
    environment = os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "stages.filter", "data/raw", "data/filtered"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_bad_images_are_counted_listed_and_skipped(salted, mlflow_store):
    project, cases = salted
    result = run_filter(project, max_bad_fraction=0.5)
    assert result.returncode == 0, result.stderr
    bad = pd.read_csv(project / "data/filtered/bad_images.csv")
    expected = {case: reason for case, (_, reason) in salted_images().items() if reason}
    by_case = dict(zip(cases["id"], cases["case"], strict=True))
    assert {
        by_case[image_id]: reason.split(" (")[0] for image_id, reason in zip(bad["id"], bad["reason"], strict=True)
    } == expected
    assert "skipped 5 unusable images" in result.stdout
    # and in MLflow: the filter stage's run holds the list and its counts (a client of this test's store: an
    # earlier test of the session may have set mlflow's tracking URI for the process)
    client = mlflow.MlflowClient(tracking_uri=mlflow_store)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    [run] = client.search_runs(experiments, filter_string="attributes.run_name = 'filter'")
    logged = client.download_artifacts(run.info.run_id, "bad_images.csv", str(project))
    assert Path(logged).read_bytes() == (project / "data/filtered/bad_images.csv").read_bytes()
    assert run.data.metrics["bad_images"] == 5 and run.data.tags["stage"] == "filter"
    kept = read_labels(project / "data/filtered/train.csv")
    usable = set(cases.loc[~cases["case"].isin(list(expected)), "id"])
    assert usable <= set(kept["id"]) and not set(bad["id"]) & set(kept["id"])

    # training reads every odd-but-usable image and completes
    classes = pd.read_csv(project / "data/filtered/classes.csv")
    variant = VARIANT | {"steps": 3}
    runtime = RUNTIME | {"eval_every": 3, "checkpoint_every": 10}
    odd = kept[kept["id"].isin(usable)]
    for decode in ("worker", "device"):  # device: the bytes reach the decoder, odd ones fall back to the worker
        variant_settings, training, runtime_settings = typed(variant, runtime, TRAIN | {"decode": decode})
        data = TrainingData(project / "data/raw", kept, odd, classes)
        job = TrainingJob(
            "odd", variant_settings, training, runtime_settings, data, project / "m.pt", project / "plots"
        )
        metrics = train_variant(job)
        assert metrics["images"] == len(usable)


def test_the_gallery_keeps_every_class_and_the_pool_loses_its_bad_photos(salted, mlflow_store):
    project, _ = salted
    raw = project / "data/raw"
    train, pool = read_labels(raw / "train.csv"), pd.read_csv(raw / "nonlandmark.csv", dtype=str)["id"]
    smallest = train["landmark_id"].value_counts().index[-1]
    small_image = train.loc[train["landmark_id"] == smallest, "id"].iloc[0]
    for split, image_id in (("train", small_image), ("nonlandmark", pool.iloc[0])):
        image_path(raw, split, image_id).write_bytes(b"not an image")
    result = run_filter(project, max_bad_fraction=0.5)
    assert result.returncode == 0, result.stderr
    bad = pd.read_csv(project / "data/filtered/bad_images.csv")
    assert (bad["split"] == "nonlandmark").sum() == 1 and set(bad["id"]) >= {small_image, pool.iloc[0]}
    gallery = read_labels(project / "data/filtered/gallery.csv")
    assert smallest not in set(read_labels(project / "data/filtered/train.csv")["landmark_id"])  # below the filter
    assert set(gallery["id"]) == set(train["id"]) - set(bad["id"])  # but searched: every usable train image
    kept_pool = pd.read_csv(project / "data/filtered/nonlandmark.csv", dtype=str)["id"]
    assert kept_pool.tolist() == pool.iloc[1:].tolist()


def test_too_many_bad_images_stop_the_stage_in_one_line(salted):
    project, _ = salted
    result = run_filter(project, max_bad_fraction=0.01)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # the rest: progress bars
    assert len(errors) == 1 and errors[0].startswith("error: 5 of ") and "Traceback" not in result.stderr
    assert errors[0].endswith(
        "over filter.max_bad_fraction (0.01); the list with reasons is in data/filtered/bad_images.csv"
    )
    assert len(pd.read_csv(project / "data/filtered/bad_images.csv")) == 5
    assert not (project / "data/filtered/train.csv").exists()


def test_odd_images_open_as_upright_rgb(tmp_path):
    for case, (data, reason) in salted_images().items():
        path = tmp_path / f"{case}.jpg"
        if data is not None:
            path.write_bytes(data)
        if reason:
            with pytest.raises(BadImage, match=reason):
                open_rgb(path)
            continue
        image = open_rgb(path)
        assert image.mode == "RGB"
        if case == "rotated":
            assert image.size == (30, 40)


def test_a_large_jpeg_decodes_at_a_reduced_scale_no_smaller_than_the_size_asked(tmp_path):
    """README: large JPEGs decode at reduced scale. A 1600 × 1200 photo asked for at 224 px decodes at a quarter
    (400 × 300: an eighth would fall under 224); asked for nothing, whole; a PNG has no reduced decoding."""
    path = tmp_path / "large.jpg"
    Image.radial_gradient("L").resize((1600, 1200)).convert("RGB").save(path, quality=90)
    assert open_rgb(path, target_size=224).size == (400, 300)
    assert open_rgb(path, target_size=100).size == (200, 150)
    assert open_rgb(path).size == (1600, 1200)
    Image.open(path).save(tmp_path / "large.png")
    assert open_rgb(tmp_path / "large.png", target_size=224).size == (1600, 1200)


def test_duplicate_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,landmark_id\na,1\nb,2\na,1\n")
    kept, dropped = drop_duplicate_ids(read_labels(path), path)
    assert kept["id"].tolist() == ["a", "b"] and dropped == 1
    path.write_text("id,landmark_id\na,1\nb,2\n\na,3\n")
    with pytest.raises(UserError, match=r"train.csv:5: id a appears again with another landmark_id"):
        drop_duplicate_ids(read_labels(path), path)


@pytest.mark.parametrize(
    "usable,error",
    [
        (0, "data.nonlandmarks: the non-landmark pool holds no usable photo; add photos to it"),
        (
            1,
            "split.holdout_fraction: 0.5 of 1 usable non-landmark photos leaves the held-out part empty; add photos "
            "to the pool (data.nonlandmarks)",
        ),
        (4, None),
    ],
    ids=["pool-all-unusable", "a-part-left-empty", "both-parts"],
)
def test_the_split_stage_stops_in_one_line_where_a_part_the_settings_need_comes_out_empty(tmp_path, tiny_dataset,
                                                                                         usable, error):  # fmt: skip
    """README: a pool whose photos all turn out unusable, or a split that leaves a needed part empty, stops the
    split stage in one line (the filter's usable non-landmarks: none, one, four), and writes nothing."""
    train = read_labels(tiny_dataset / "train.csv")
    classes = train["landmark_id"].value_counts().rename_axis("landmark_id").reset_index(name="images")
    classes.to_csv(tmp_path / "classes.csv", index=False)
    train.to_csv(tmp_path / "gallery.csv", index=False)
    pd.DataFrame({"id": [f"{row:016x}" for row in range(usable)]}).to_csv(tmp_path / "nonlandmark.csv", index=False)
    (tmp_path / "params.yaml").write_text(params_with())
    result = subprocess.run(
        [sys.executable, "-m", "stages.split", "gallery.csv", "classes.csv", "nonlandmark.csv", "split", "sizes.json"],
        cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    if error is None:
        assert result.returncode == 0, result.stderr
        assert len(pd.read_csv(tmp_path / "split/pool.csv")) == len(pd.read_csv(tmp_path / "split/holdout.csv")) == 2
        return
    assert (result.returncode, result.stderr) == (1, f"error: {error}\n")
    assert not (tmp_path / "split").exists() and not (tmp_path / "sizes.json").exists()
