"""DDP on the CPU: the train stage with train.gpus: 2 relaunches itself under torchrun (gloo) and ends where a
single process training on the same global batches ends; only the first process writes outputs."""

import subprocess

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from landmark.distributed import training_processes
from landmark.errors import UserError
from tests.test_resume import SETTINGS, environment, make_project, train_command

# test_convnext normalises with LayerNorm: per-sample, so splitting a batch over processes changes nothing (the CPU
# has no SyncBatchNorm; on GPUs BatchNorm layers are synchronised).
VARIANT = {
    "backbone": "test_convnext", "pooling": "avg", "attention": "none", "head": "linear", "pretrained": "none",
    "frozen_tensors": 0, "image_size": 32, "batch_size": 8, "lr": 0.001, "steps": 4,
}  # fmt: skip


def train_with(processes, folder, dataset):
    project = make_project(folder, dataset)
    settings = SETTINGS | {"gpus": processes, "eval_every": 2, "checkpoint_every": 100}
    (project / "params.yaml").write_text(yaml.safe_dump({"train": settings, "variants": {"tiny": VARIANT}}))
    result = subprocess.run(
        train_command(project, dataset), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


def test_two_gloo_processes_end_where_one_process_ends(tmp_path, tiny_dataset):
    single, _ = train_with(1, tmp_path / "one", tiny_dataset)
    double, result = train_with(2, tmp_path / "two", tiny_dataset)
    assert result.stdout.count("train tiny: 4 steps") == 1  # one summary line, from the first process

    expected = torch.load(single / "model.pt", weights_only=True)["state_dict"]
    distributed = torch.load(double / "model.pt", weights_only=True)["state_dict"]
    for key in expected:
        assert torch.allclose(expected[key], distributed[key], atol=1e-5), key
    for curve, columns in {"train": ["loss", "batch_gap"], "dev": ["loss", "gap", "batch_gap"]}.items():
        one = pd.read_csv(single / f"plots/{curve}/tiny.csv")
        two = pd.read_csv(double / f"plots/{curve}/tiny.csv")
        assert one["step"].tolist() == two["step"].tolist()
        pd.testing.assert_frame_equal(one[columns], two[columns], atol=1e-5, rtol=1e-5)

    mlflow.set_tracking_uri(f"sqlite:///{double / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1 and runs["params.processes"].tolist() == ["2"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, tiny_dataset):
    project = make_project(tmp_path, tiny_dataset)
    settings = SETTINGS | {"gpus": 3}
    (project / "params.yaml").write_text(yaml.safe_dump({"train": settings, "variants": {"tiny": VARIANT}}))
    result = subprocess.run(
        train_command(project, tiny_dataset), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "error: batch_size 8 does not split over 3 processes; make it a multiple" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setting", [0, -1, 1.5, "two", True])
def test_gpus_must_be_auto_or_a_whole_number(setting):
    with pytest.raises(UserError, match=r"train.gpus: .* is not auto or a whole number"):
        training_processes(setting, torch.device("cpu"))


def test_auto_is_one_process_on_the_cpu():
    assert training_processes("auto", torch.device("cpu")) == 1
