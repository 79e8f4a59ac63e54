import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torch._inductor.config
import yaml

from landmark.checks import check_params
from landmark.data.labels import LabelEncoding
from landmark.data.layout import read_labels
from landmark.data.loading import image_dataset
from landmark.data.prepare import filter_classes, split_dev
from landmark.errors import UserError
from landmark.inference import TrainedModel, predict
from landmark.metrics import dev_metrics
from landmark.models import create_loss, create_model
from landmark.runtime import loader_workers, make_loader, pick_device, will_compile
from landmark.settings import LearningRateSchedule, Runtime, StopEarly, Train, Variant, parse
from landmark.train import EarlyStop, TrainingData, TrainingJob, dev_predictions_path, lr_factor, train_variant
from stages.evaluate import read_dev_predictions
from tests.test_resume import RUNTIME as RESUME_RUNTIME
from tests.test_resume import VARIANT as RESUME_VARIANT
from tests.test_resume import typed

VARIANT = RESUME_VARIANT | {"backbone": "resnet18", "steps": 6}
RUNTIME = RESUME_RUNTIME | {"log_every": 2, "eval_every": 3, "checkpoint_every": 100}
PARAMS = Path(__file__).parents[1] / "params.yaml"


@pytest.fixture
def prepared(tiny_dataset):
    kept, classes = filter_classes(read_labels(tiny_dataset / "train.csv"), 4)
    train, dev = split_dev(kept, classes["landmark_id"], 0.25, 0.0, seed=0)
    return train, dev, classes


def test_training_saves_model_plots_and_an_mlflow_run(tmp_path, tiny_dataset, prepared, mlflow_store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-lark")
    train, dev, classes = prepared
    data = TrainingData(tiny_dataset, train, dev, classes)
    model_path = tmp_path / "models/tiny/model.pt"
    metrics = train_variant(TrainingJob("tiny", *typed(VARIANT, RUNTIME), data, model_path, tmp_path / "plots"))

    assert pd.read_csv(tmp_path / "plots/train/tiny.csv")["step"].tolist() == [2, 4, 6]
    dev_curve = pd.read_csv(tmp_path / "plots/dev/tiny.csv")
    assert dev_curve["step"].tolist() == [3, 6] and dev_curve["gap"].iloc[-1] == pytest.approx(metrics["gap"])

    # The saved model reproduces the final dev pass, whose predictions lie beside it and score exactly as training
    # scored them (the evaluate stage reads them back bit for bit).
    trained = TrainedModel.load(model_path, torch.device("cpu"))
    assert (
        trained.variant == typed(VARIANT)[0] and trained.labels.landmark_ids.tolist() == classes["landmark_id"].tolist()
    )
    assert trained.decode == "worker"
    targets = trained.labels.indices(dev["landmark_id"])
    loader = make_loader(trained.dataset(tiny_dataset, "train", dev["id"], targets), 64, 0, trained.device)
    loss = create_loss(trained.variant, trained.labels.images)
    classes_predicted, confidences, _ = predict(trained.model, loader, trained.device, loss)
    written = read_dev_predictions(dev_predictions_path(model_path))
    assert written[["id", "landmark_id"]].equals(dev[["id", "landmark_id"]].reset_index(drop=True))
    assert written["predicted"].tolist() == trained.labels.landmarks(classes_predicted).tolist()
    np.testing.assert_allclose(written["confidence"], confidences, rtol=1e-5)
    scored = dev_metrics(*(written[column].to_numpy() for column in written.columns), VARIANT["batch_size"])
    assert scored == {key: metrics[key] for key in scored}

    mlflow.set_tracking_uri(mlflow_store)
    run = mlflow.get_run(trained.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["variant.backbone"] == "resnet18" and run.data.params["variant.lr"] == "0.001"
    assert run.data.tags["variant"] == "tiny" and run.data.tags["dvc_experiment"] == "tidy-lark"
    assert len(run.data.tags["git_commit"]) in (40, len("unknown"))
    client = mlflow.tracking.MlflowClient()
    assert [point.step for point in client.get_metric_history(run.info.run_id, "train_loss")] == [2, 4, 6]
    # Throughput per logging interval, from the second logging step on, in MLflow only (timings stay out of the
    # DVC plots, so a resumed training's curves equal an uninterrupted one's).
    speed = client.get_metric_history(run.info.run_id, "train_images_per_second")
    waiting = client.get_metric_history(run.info.run_id, "train_data_wait")
    assert [point.step for point in speed] == [point.step for point in waiting] == [4, 6]
    assert all(point.value > 0 for point in speed) and all(0 < point.value < 1 for point in waiting)
    assert "images_per_second" not in pd.read_csv(tmp_path / "plots/train/tiny.csv")
    assert metrics["images_per_second"] > 0 and 0 < metrics["data_wait"] < 1
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "dev_predictions.csv", "plots"} <= artifacts
    assert {run.data.metrics[f"eval_{key}"] for key in ("gap", "loss", "accuracy")} == {
        metrics[key] for key in ("gap", "loss", "accuracy")
    }


def test_dev_predictions_that_are_missing_or_not_trainings_are_one_line_each(tmp_path):
    missing = tmp_path / "models/v/dev_predictions.csv"
    with pytest.raises(
        UserError, match=r"^\S+dev_predictions.csv: no such file; the train stage writes it \(dvc repro\)$"
    ):
        read_dev_predictions(missing)
    other = tmp_path / "other.csv"
    other.write_text("id,landmark_id\na,1\n")
    with pytest.raises(UserError, match=r"other.csv: not a dev predictions file \(.*\); rerun its train stage$"):
        read_dev_predictions(other)


def test_same_seed_same_model(tmp_path, tiny_dataset, prepared, mlflow_store):
    data = TrainingData(tiny_dataset, *prepared)
    short = VARIANT | {"steps": 2}
    first = train_variant(TrainingJob("a", *typed(short, RUNTIME), data, tmp_path / "a.pt", tmp_path / "plots"))
    second = train_variant(TrainingJob("b", *typed(short, RUNTIME), data, tmp_path / "b.pt", tmp_path / "plots"))
    assert first["loss"] == second["loss"]
    a, b = (torch.load(tmp_path / name, weights_only=True)["state_dict"] for name in ("a.pt", "b.pt"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert np.isfinite(first["loss"])


def test_device_choice_falls_back_to_the_cpu():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="params.yaml runtime.device: 'tpu' is not auto, cpu or cuda"):
        parse(Runtime, RUNTIME | {"device": "tpu"}, "runtime")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="torch sees no GPU here; use auto or cpu"):
            pick_device("cuda")


def test_a_machine_that_cannot_compile_stops_when_compile_is_true_and_trains_without_it_on_auto(monkeypatch, capsys):
    cpu = torch.device("cpu")
    assert [will_compile(setting, cpu) for setting in (True, "auto", False)] == [True, False, False]
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, "/nonexistent/g++"))  # a box without gcc
    torch._dynamo.reset()  # forget the probe compiled above, as a fresh process would not have it
    message = (
        r"params.yaml runtime.compile: true, but torch.compile cannot build kernels on cpu here \(InductorError: "
        r"InvalidCxxCompiler: No working C\+\+ compiler found .*\); install a C compiler \(gcc\) or set "
        r"runtime.compile: auto or false$"
    )
    with pytest.raises(UserError, match=message):
        will_compile(True, cpu)
    params = yaml.safe_load(PARAMS.read_text())
    params["runtime"]["compile"] = True
    with pytest.raises(UserError, match=message):
        check_params(params)
    assert check_params(params, this_machine=False) == len(params["variants"])  # the value alone is fine
    if not torch.cuda.is_available():  # `auto` compiles on a GPU only: here the probe fails for want of a driver
        capsys.readouterr()
        assert not will_compile("auto", torch.device("cuda"))
        warning = capsys.readouterr().err.strip()
        assert warning.count("\n") == 0 and warning.startswith(
            "train: torch.compile cannot build kernels on cuda here (RuntimeError: Found no NVIDIA driver"
        ), warning
        assert warning.endswith(
            "training without it (install a C compiler, gcc, for its speed; runtime.compile: false skips this check)"
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows what a machine without a GPU refuses")
def test_a_data_machine_checks_the_values_and_a_training_machine_also_the_hardware():
    params = yaml.safe_load(PARAMS.read_text())
    params["runtime"] |= {"device": "cuda", "gpus": 4}
    params["variants"] = {"xception": params["variants"]["xception"] | {"batch_size": 64}}
    params["embed"]["variants"], params["embed"]["ensembles"] = ["xception"], {}
    assert check_params(params, this_machine=False) == 1
    with pytest.raises(UserError, match="runtime.device: cuda asked for, but torch sees no GPU here"):
        check_params(params)
    params["variants"]["xception"]["batch_size"] = 30
    with pytest.raises(UserError, match="batch_size 30 does not split over 4 processes"):
        check_params(params, this_machine=False)
    params["runtime"]["device"] = "gpu"
    with pytest.raises(UserError, match="params.yaml runtime.device: 'gpu' is not auto, cpu or cuda"):
        check_params(params, this_machine=False)


def test_decode_setting_is_worker_or_device():
    def train(decode):
        return parse(Train, {"seed": 0, "precision": "auto", "decode": decode}, "train")

    assert [train(mode).decode for mode in ("worker", "device")] == ["worker", "device"]
    with pytest.raises(UserError, match="params.yaml train.decode: 'auto' is not worker or device"):
        train("auto")


def test_loader_workers_auto_leaves_two_cores_per_gpu_process_and_none_on_the_cpu(monkeypatch):
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    for cores, processes, workers in [(16, 1, 14), (128, 8, 14), (224, 8, 16), (64, 1, 16), (2, 1, 0), (8, 8, 0)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: set(range(cores)))
        assert loader_workers("auto", gpu, processes) == workers, (cores, processes)
    assert loader_workers("auto", cpu) == 0
    assert [loader_workers(number, gpu) for number in (0, 3, 40)] == [0, 3, 40]
    for wrong in ("four", -1, True, 2.5):
        with pytest.raises(UserError, match=rf"params.yaml runtime.num_workers: {wrong!r} is not auto or a whole"):
            parse(Runtime, RUNTIME | {"num_workers": wrong}, "runtime")
    params = yaml.safe_load(PARAMS.read_text())
    params["runtime"]["num_workers"] = "all"
    with pytest.raises(UserError, match="params.yaml runtime.num_workers: 'all' is not auto"):
        check_params(params)


def test_a_loader_whose_batches_cannot_fit_in_shared_memory_is_refused_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2**26))  # docker's 64 MB /dev/shm
    cpu = torch.device("cpu")
    message = (
        r"/dev/shm has 0.06 GiB free, but 2 loader workers keep up to 0.38 GiB of decoded batches there; "
        r"give it more \(docker run --shm-size=2g\) or lower runtime.num_workers in params.yaml"
    )
    with pytest.raises(UserError, match=message):
        make_loader(image_dataset(256, tmp_path, "test", []), 256, 2, cpu)
    for data, workers in [(image_dataset(256, tmp_path, "test", []), 0), (image_dataset(32, tmp_path, "test", []), 2)]:
        assert make_loader(data, 256, workers, cpu).num_workers == workers  # no workers; 6 MB of 32-px batches
    assert make_loader(image_dataset(256, tmp_path, "test", [], decode="device"), 256, 2, cpu).num_workers == 2


def test_predicting_no_images_gives_empty_results(tmp_path):
    model = create_model(typed(VARIANT)[0], 3)
    loader = make_loader(image_dataset(32, tmp_path, "test", []), 4, 0, torch.device("cpu"))
    classes, confidences, losses = predict(model, loader, torch.device("cpu"))
    assert classes.shape == confidences.shape == (0,) and losses is None


def test_the_label_encoding_maps_both_ways_and_marks_unknown_landmarks():
    classes = pd.DataFrame({"landmark_id": [70, 5, 12], "class_index": [2, 0, 1], "images": [4, 9, 6]})
    labels = LabelEncoding.from_classes(classes)
    assert labels.landmark_ids.tolist() == [5, 12, 70] and labels.images.tolist() == [9, 6, 4] and len(labels) == 3
    assert labels.indices([12, 70, 5, 99]).tolist() == [1, 2, 0, -1]
    assert labels.landmarks([2, 0]).tolist() == [70, 5]


def test_the_model_contract_gives_features_embedding_logits_and_a_confidence():
    model = create_model(typed(VARIANT)[0], 3).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(images)
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        assert features.dim() == 4 and embedding.shape == (2, model.neck.out_features) and logits.shape == (2, 3)
        assert torch.equal(logits, model(images)) and torch.equal(logits, model.head(embedding))
        confidence, predicted = model.head.confidence(logits)
        assert torch.allclose(confidence, logits.softmax(dim=1).max(dim=1).values)


def test_early_stop_waits_patience_passes_without_a_higher_gap_and_reads_a_resumed_curve():
    stop = EarlyStop(StopEarly(every=5, patience=2))
    assert [stop.due(step) for step in (4, 5, 10)] == [False, True, True]
    assert [stop.flat_after(gap) for gap in (0.5, 0.7, 0.7, 0.9, 0.8, 0.9)] == [False] * 5 + [True]
    # a resumed training reads the passes it made from the dev curve (only those on its cadence) and goes on alike
    rows = [{"step": step, "gap": gap} for step, gap in ((5, 0.5), (7, 0.99), (10, 0.7), (15, 0.7), (20, 0.9))]
    resumed = EarlyStop(StopEarly(every=5, patience=2), rows)
    assert [resumed.flat_after(gap) for gap in (0.8, 0.9)] == [False, True]
    never = EarlyStop(None)
    assert not never.due(5)
    assert EarlyStop.never_stops(StopEarly(every=5, patience=2), 15) is None  # passes at 5, 10, 15: 15 can stop
    assert EarlyStop.never_stops(StopEarly(every=5, patience=2), 14) == (
        "stop_early cannot stop it: 14 steps hold 2 dev passes (one every 5), and a stop comes after 3 at the "
        "earliest; it trains every step"
    )
    assert EarlyStop.never_stops(None, 14) is None


def test_training_stops_where_the_dev_gap_stops_rising(tmp_path, tiny_dataset, prepared, mlflow_store):
    data = TrainingData(tiny_dataset, *prepared)
    stopping = VARIANT | {"steps": 40, "stop_early": {"every": 2, "patience": 1}}
    runtime = RUNTIME | {"eval_every": 100}
    model_path = tmp_path / "model.pt"
    metrics = train_variant(TrainingJob("tiny", *typed(stopping, runtime), data, model_path, tmp_path / "plots"))
    curve = pd.read_csv(tmp_path / "plots/dev/tiny.csv")
    gaps = curve["gap"].tolist()
    assert curve["step"].tolist() == list(range(2, metrics["last_step"] + 1, 2))
    assert metrics["last_step"] < 40 and metrics["steps"] == metrics["last_step"]
    # it stopped at the first pass whose GAP rose above none before it, and no earlier
    assert gaps[-1] <= max(gaps[:-1]) and all(gaps[n] > max(gaps[:n]) for n in range(1, len(gaps) - 1))
    assert metrics["gap"] == pytest.approx(gaps[-1])
    assert TrainedModel.load(model_path, torch.device("cpu")).variant.stop_early == StopEarly(every=2, patience=1)


def test_a_learning_rate_schedule_warms_up_then_falls_along_a_cosine(tmp_path, tiny_dataset, prepared, mlflow_store):
    factor = lr_factor(LearningRateSchedule(warmup_steps=2, final_fraction=0.1), steps=6)
    # step 1 trains at lr / 2, step 2 at lr; from there a half cosine, down to lr · 0.1 at the last step
    assert [factor(taken) for taken in range(6)] == pytest.approx([0.5, 1.0, 1.0, 0.775, 0.325, 0.1])
    assert {lr_factor(None, steps=6)(taken) for taken in range(6)} == {1.0}
    with pytest.raises(UserError, match=r"^params.yaml variants.v.lr_schedule.warmup_steps: 6 warm-up steps leave "):
        parse(Variant, VARIANT | {"lr_schedule": {"warmup_steps": 6, "final_fraction": 0.1}}, "variants.v")
    # the run trains at those rates: its last step at lr · final_fraction, which a constant lr does not reach
    scheduled = VARIANT | {"lr_schedule": {"warmup_steps": 2, "final_fraction": 0.1}}
    data = TrainingData(tiny_dataset, *prepared)
    trained = {}
    for name, variant in {"constant": VARIANT, "scheduled": scheduled}.items():
        train_variant(TrainingJob(name, *typed(variant, RUNTIME), data, tmp_path / f"{name}.pt", tmp_path / "plots"))
        run_id = torch.load(tmp_path / f"{name}.pt", weights_only=True)["mlflow_run_id"]
        history = mlflow.MlflowClient(tracking_uri=mlflow_store).get_metric_history(run_id, "train_lr")
        trained[name] = (
            torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"],
            [point.value for point in sorted(history, key=lambda point: point.step)],
        )
    assert trained["constant"][1] == [0.001] * 3  # logged at steps 2, 4 and 6
    assert trained["scheduled"][1] == pytest.approx([0.001, 0.000775, 0.0001])  # factors 1, 0.775, 0.1
    weights = trained["constant"][0], trained["scheduled"][0]
    assert any(not torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
