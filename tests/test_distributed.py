"""DDP on the CPU: the train stage with train.gpus: 2 relaunches itself under torchrun (gloo) and ends where a
single process training on the same global batches ends, also when killed and rerun; only the first process
writes outputs."""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from landmark.distributed import training_processes
from landmark.errors import UserError
from landmark.settings import Runtime, parse
from tests.test_resume import (
    RUNTIME,
    environment,
    kill_at_first_checkpoint,
    make_project,
    project_params,
    train_command,
)
from tests.test_resume import VARIANT as RESUME_VARIANT

# test_convnext normalises with LayerNorm: per-sample, so splitting a batch over processes changes nothing (the CPU
# has no SyncBatchNorm; on GPUs BatchNorm layers are synchronised).
VARIANT = {
    "backbone": "test_convnext", "pooling": "avg", "attention": "none", "head": "linear", "pretrained": "none",
    "frozen_tensors": 0, "image_size": 32, "batch_size": 8, "lr": 0.001, "steps": 40,
    "augmentation": RESUME_VARIANT["augmentation"],
}  # fmt: skip


def distributed_project(processes, folder, dataset):
    project = make_project(folder, dataset)
    runtime = RUNTIME | {"gpus": processes, "eval_every": 2, "checkpoint_every": 4}
    (project / "params.yaml").write_text(project_params(VARIANT, runtime))
    return project


def processes_working_in(folder: Path) -> list[int]:
    """The live processes whose working directory is folder (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, a zombie, or not ours to read
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
    return found


def test_two_gloo_processes_killed_and_rerun_end_where_one_uninterrupted_process_ends(tmp_path, tiny_dataset):
    single = distributed_project(1, tmp_path / "one", tiny_dataset)
    subprocess.run(train_command(single, tiny_dataset), cwd=single, env=environment(single), check=True)

    double = distributed_project(2, tmp_path / "two", tiny_dataset)
    command, env = train_command(double, tiny_dataset), environment(double)
    process = subprocess.Popen(command, cwd=double, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = double / "checkpoints/last.pt"
    kill_at_first_checkpoint(process, checkpoint)  # the stage's process, which is torchrun by now
    deadline = time.time() + 30
    while processes_working_in(double) and time.time() < deadline:
        time.sleep(0.05)
    assert processes_working_in(double) == []  # torchrun's training processes went with it
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < killed_at < VARIANT["steps"] and not (double / "model.pt").exists()

    rerun = subprocess.run(command, cwd=double, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count(f"resuming from step {killed_at}") == 1  # one line of each kind: the first process's
    assert rerun.stdout.count(f"train tiny: {VARIANT['steps'] - killed_at} steps in") == 1
    assert not checkpoint.exists()

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
    runs = mlflow.search_runs(search_all_experiments=True)  # the rerun went on with the killed run
    assert len(runs) == 1 and runs["params.processes"].tolist() == ["2"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, tiny_dataset):
    project = make_project(tmp_path, tiny_dataset)
    (project / "params.yaml").write_text(project_params(VARIANT, RUNTIME | {"gpus": 3}))
    result = subprocess.run(
        train_command(project, tiny_dataset), cwd=project, env=environment(project), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "error: batch_size 8 does not split over 3 processes; make it a multiple" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setting", [0, -1, 1.5, "two", True])
def test_gpus_must_be_auto_or_a_whole_number(setting):
    with pytest.raises(UserError, match=r"runtime.gpus: .* is not auto or a whole number"):
        parse(Runtime, RUNTIME | {"gpus": setting}, "runtime")


def test_auto_is_one_process_on_the_cpu():
    assert training_processes("auto", torch.device("cpu")) == 1
