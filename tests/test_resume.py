"""Faults in training: a kill -9 resumes to the same result, a NaN loss stops cleanly, bad params stop early."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes, split_dev
from landmark.errors import UserError
from landmark.files import write_csv
from landmark.models import check_builds
from landmark.settings import Runtime, Train, Variant, parse
from landmark.train import TrainingData, TrainingJob, train_variant
from tests.params_file import PARAMS, params_with

ROOT = Path(__file__).parents[1]
VARIANT = {
    "backbone": "resnet10t", "min_class_images": "filter", "pooling": "avg", "attention": "none", "neck": "none",
    "head": "linear", "loss": "cross_entropy", "pretrained": "none",
    "frozen_tensors": 0, "image_size": 32, "batch_size": 8, "lr": 0.001, "steps": 24, "stop_early": "none",
    "lr_schedule": "none", "augmentation": {"translate": 0.1, "scale": [0.9, 1.1], "flip": 0.5},
}  # fmt: skip
TRAIN = {"seed": 0, "precision": "auto", "decode": "worker"}
RUNTIME = {
    "device": "cpu", "gpus": 1, "num_workers": 0, "compile": "auto", "nodes": 1, "node_rank": 0,
    "rendezvous": "localhost:29500", "log_every": 1, "eval_every": 10,
    "checkpoint_every": 4, "inference_batch_size": 16,
}  # fmt: skip


def typed(variant=VARIANT, runtime=RUNTIME, train=TRAIN) -> tuple:
    """(Variant, Train, Runtime) from params mappings: train_variant's settings arguments."""
    return parse(Variant, variant, "variants.v"), parse(Train, train, "train"), parse(Runtime, runtime, "runtime")


def project_params(variant=VARIANT, runtime=RUNTIME) -> str:
    """The project's params.yaml with one variant, tiny, trained as these say."""
    embed = PARAMS["embed"] | {"variants": ["tiny"], "ensembles": {}}
    return params_with(train=TRAIN, runtime=runtime, embed=embed, variant_defaults={}, variants={"tiny": variant})


def make_project(folder: Path, dataset: Path, variant=VARIANT) -> Path:
    kept, classes = filter_classes(read_labels(dataset / "train.csv"), 4)
    train, dev = split_dev(kept, classes["landmark_id"], 0.25, 0.0, seed=0)
    write_csv(folder / "split/train.csv", train)
    write_csv(folder / "split/dev.csv", dev)
    write_csv(folder / "classes.csv", classes)
    write_csv(folder / "gallery.csv", read_labels(dataset / "train.csv"))
    (folder / "params.yaml").write_text(project_params(variant))
    return folder


def train_command(folder, dataset):
    return [
        sys.executable, "-m", "stages.train", "tiny", str(dataset), "split", "classes.csv", "gallery.csv", "model.pt",
        "plots",
        "checkpoints/last.pt",
    ]  # fmt: skip


def environment(folder):
    return os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}


def kill_at_first_checkpoint(process: subprocess.Popen, checkpoint: Path) -> None:
    """kill -9 the training process as soon as it has written its first checkpoint."""
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def killed_at_first_checkpoint(project: Path, dataset: Path) -> int:
    """The step at which the project's training, started and killed -9 at its first checkpoint, stopped."""
    process = subprocess.Popen(
        train_command(project, dataset), cwd=project, env=environment(project), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    checkpoint = project / "checkpoints/last.pt"
    kill_at_first_checkpoint(process, checkpoint)
    assert checkpoint.exists() and not (project / "model.pt").exists()
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < VARIANT["steps"]
    return killed_at


def test_kill_9_then_rerun_ends_as_an_uninterrupted_run(tmp_path, tiny_dataset):
    # with a learning-rate schedule, whose place the checkpoint keeps too
    scheduled = VARIANT | {"lr_schedule": {"warmup_steps": 5, "final_fraction": 0.1}}
    whole = make_project(tmp_path / "whole", tiny_dataset, scheduled)
    subprocess.run(
        train_command(whole, tiny_dataset), cwd=whole, env=environment(whole), check=True, capture_output=True
    )

    killed = make_project(tmp_path / "killed", tiny_dataset, scheduled)
    killed_at = killed_at_first_checkpoint(killed, tiny_dataset)
    checkpoint = killed / "checkpoints/last.pt"

    rerun = subprocess.run(
        train_command(killed, tiny_dataset), cwd=killed, env=environment(killed), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from step {killed_at}" in rerun.stdout
    assert f"train tiny: {VARIANT['steps'] - killed_at} steps in" in rerun.stdout  # the steps this run took
    assert not checkpoint.exists()
    expected = torch.load(whole / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    for key in expected:
        assert torch.allclose(expected[key].float(), resumed[key].float(), atol=1e-6), key
    for curve in ("train", "dev"):
        assert (whole / f"plots/{curve}/tiny.csv").read_text() == (killed / f"plots/{curve}/tiny.csv").read_text()


@pytest.mark.parametrize(
    "change,resumed",
    [
        ({"runtime": RUNTIME | {"log_every": 3, "inference_batch_size": 8}}, True),  # how fast, not what
        ({"variant": VARIANT | {"lr": 0.002}}, False),  # other params
        ({"data": "the last train row dropped"}, False),  # other data
    ],
    ids=["runtime-only", "other-params", "other-data"],
)
def test_a_checkpoint_resumes_across_a_runtime_change_and_not_across_other_params_or_data(
    tmp_path, tiny_dataset, change, resumed
):
    """README: a checkpoint of other params or data is ignored, one after a runtime-only change is resumed: a
    training killed at its first checkpoint, then rerun after the change."""
    project = make_project(tmp_path, tiny_dataset)
    killed_at = killed_at_first_checkpoint(project, tiny_dataset)
    checkpoint = project / "checkpoints/last.pt"
    if "data" in change:
        train = read_labels(project / "split/train.csv")
        write_csv(project / "split/train.csv", train.iloc[:-1])
    else:
        (project / "params.yaml").write_text(project_params(change.get("variant", VARIANT),
                                                            change.get("runtime", RUNTIME)))  # fmt: skip
    rerun = subprocess.run(
        train_command(project, tiny_dataset), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert (f"resuming from step {killed_at}" in rerun.stdout) == resumed
    steps = VARIANT["steps"] - killed_at if resumed else VARIANT["steps"]
    assert f"train tiny: {steps} steps in" in rerun.stdout and not checkpoint.exists()


def test_a_stale_checkpoint_is_not_resumed(tmp_path, tiny_dataset, mlflow_store):
    project = make_project(tmp_path, tiny_dataset)
    train, dev = read_labels(project / "split/train.csv"), read_labels(project / "split/dev.csv")
    classes = pd.read_csv(project / "classes.csv")
    (project / "last.pt").parent.mkdir(exist_ok=True)
    torch.save({"fingerprint": "another training", "step": 3}, project / "last.pt")
    short = VARIANT | {"steps": 2}
    data = TrainingData(tiny_dataset, train, dev, classes)
    metrics = train_variant(TrainingJob("t", *typed(short), data, project / "m.pt", project / "p", project / "last.pt"))
    assert metrics["images_per_second"] > 0 and not (project / "last.pt").exists()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_dataset, mlflow_store):
    project = make_project(tmp_path, tiny_dataset)
    train, dev = read_labels(project / "split/train.csv"), read_labels(project / "split/dev.csv")
    classes = pd.read_csv(project / "classes.csv")
    exploding = VARIANT | {"lr": 1e30, "steps": 10}
    runtime = RUNTIME | {"checkpoint_every": 1}
    with pytest.raises(
        UserError, match=r"variants.boom: the loss became (nan|inf) at step \d+; the last good checkpoint"
    ):
        data = TrainingData(tiny_dataset, train, dev, classes)
        train_variant(
            TrainingJob(
                "boom", *typed(exploding, runtime), data, tmp_path / "m.pt", tmp_path / "p", tmp_path / "last.pt"
            )
        )
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values() if tensor.is_floating_point())
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": -0.001}, r"variants.v.lr: -0.001 must be a positive number"),
        ({"steps": 0}, r"variants.v.steps: 0 must be a whole number >= 1"),
        ({"batch_size": 2.5}, r"variants.v.batch_size: 2.5 must be a whole number >= 1"),
        ({"frozen_tensors": -1}, r"variants.v.frozen_tensors: -1 must be a whole number"),
        ({"image_size": 4, "backbone": "legacy_xception"}, r"variants.v.image_size: legacy_xception cannot take 4 px"),
        ({"pooling": "max"}, r"variants.v.pooling: unknown pooling 'max'"),
        ({"augmentation": {"translate": 0.1, "scale": [1.1, 0.9], "flip": 0.5}}, r"augmentation.scale: .* swap them"),
        ({"augmentation": {"translate": 0.1, "scale": [0.9, 1.1], "flip": 2}}, r"augmentation.flip: 2 must be a"),
        ({"lr_": 0.1}, r"variants.v.lr_: unknown setting; expected one of backbone, min_class_images, pooling"),
    ],
)
def test_bad_params_are_refused_before_any_work(change, message):
    with pytest.raises(UserError, match=message):
        check_builds(typed(VARIANT | change)[0], "variants.v")
    missing = {key: value for key, value in VARIANT.items() if key != "lr"}
    with pytest.raises(UserError, match=r"variants.v.lr: missing"):
        typed(missing)
