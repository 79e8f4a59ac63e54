"""DDP on the CPU: the train stage with runtime.gpus: 2 relaunches itself under torchrun (gloo) and ends where a
single process training on the same global batches ends, also when killed and rerun, and so do two single-process
"nodes" meeting at a rendezvous on localhost; only the first process writes outputs. The embed stage on two
processes writes what one writes."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from landmark.data.gallery_photos import update_gallery_photos
from landmark.data.labels import LabelEncoding
from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes, split_dev
from landmark.data.shards import pack
from landmark.distributed import Ranks, training_processes
from landmark.errors import UserError
from landmark.files import write_csv
from landmark.inference import save_model
from landmark.models import create_model
from landmark.runtime import loader_workers
from landmark.settings import Runtime, Variant, parse
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
    **RESUME_VARIANT, "backbone": "test_convnext", "steps": 40,
}  # fmt: skip


def distributed_project(processes, folder, dataset, **runtime):
    project = make_project(folder, dataset)
    runtime = RUNTIME | {"gpus": processes, "eval_every": 2, "checkpoint_every": 4} | runtime
    (project / "params.yaml").write_text(project_params(VARIANT, runtime))
    return project


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, tiny_dataset):
    """The train stage on one process: what every distributed run must end at."""
    single = distributed_project(1, tmp_path_factory.mktemp("one"), tiny_dataset)
    subprocess.run(train_command(single, tiny_dataset), cwd=single, env=environment(single), check=True)
    return single


def assert_same_training(single: Path, distributed: Path) -> None:
    expected = torch.load(single / "model.pt", weights_only=True)["state_dict"]
    trained = torch.load(distributed / "model.pt", weights_only=True)["state_dict"]
    for key in expected:
        assert torch.allclose(expected[key], trained[key], atol=1e-5), key
    for curve, columns in {"train": ["loss", "batch_gap"], "dev": ["loss", "gap", "batch_gap"]}.items():
        one = pd.read_csv(single / f"plots/{curve}/tiny.csv")
        two = pd.read_csv(distributed / f"plots/{curve}/tiny.csv")
        assert one["step"].tolist() == two["step"].tolist()
        pd.testing.assert_frame_equal(one[columns], two[columns], atol=1e-5, rtol=1e-5)
    mlflow.set_tracking_uri(f"sqlite:///{distributed / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1 and runs["params.processes"].tolist() == ["2"]


def processes_working_in(folder: Path) -> list[int]:
    """The live processes whose working directory is folder (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile, a zombie, or not ours to read
            if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
    return found


def test_two_gloo_processes_killed_and_rerun_end_where_one_uninterrupted_process_ends(
    tmp_path, tiny_dataset, single_process
):
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
    assert_same_training(single_process, double)  # one MLflow run: the rerun went on with the killed run


def test_two_single_process_nodes_meeting_on_localhost_end_where_one_process_ends(
    tmp_path, tiny_dataset, single_process
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        rendezvous = f"127.0.0.1:{probe.getsockname()[1]}"
    nodes = [
        distributed_project(1, tmp_path / f"node{rank}", tiny_dataset, nodes=2, node_rank=rank, rendezvous=rendezvous)
        for rank in (0, 1)
    ]
    started = [
        subprocess.Popen(
            train_command(node, tiny_dataset),
            cwd=node,
            env=environment(node),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for node in nodes
    ]
    outputs = [process.communicate(timeout=300)[0] for process in started]
    assert [process.returncode for process in started] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert_same_training(single_process, nodes[0])
    assert not (nodes[1] / "model.pt").exists() and not (nodes[1] / "plots").exists()  # node 0 writes the outputs
    assert f"train tiny: {VARIANT['steps']} steps in" in outputs[0]


def test_a_node_rank_must_be_below_the_node_count():
    with pytest.raises(UserError, match=r"^params.yaml runtime.node_rank: 2 must be below runtime.nodes \(2\)$"):
        parse(Runtime, RUNTIME | {"nodes": 2, "node_rank": 2}, "runtime")
    with pytest.raises(UserError, match=r"^params.yaml runtime.rendezvous: 'node0' must be host:port"):
        parse(Runtime, RUNTIME | {"rendezvous": "node0"}, "runtime")


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


def test_more_gpus_than_the_machine_has_is_one_line_naming_the_key(monkeypatch):
    """README: more `gpus` than the machine has is one line naming the params key (a machine with two GPUs, asked
    for four)."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert training_processes("auto", cuda) == 2 and training_processes(2, cuda) == 2
    with pytest.raises(UserError, match=r"^params.yaml runtime.gpus: 4, but torch sees 2 GPU\(s\)$"):
        training_processes(4, cuda)


def test_loader_workers_share_this_machines_cores_among_its_own_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "16")  # two nodes of 8 GPUs
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)))
    ranks = Ranks()
    assert (ranks.world, ranks.on_this_machine) == (16, 8)
    assert loader_workers("auto", torch.device("cuda"), ranks.on_this_machine) == 14  # 128 // 8 - 2, not 128 // 16 - 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert Ranks().on_this_machine == 16  # one machine: every process is on it


def embed_command(model: str, out_dir: str) -> list:
    """The embed stage's command in an embed_project: model's embeddings into out_dir, its cache in cache/."""
    return [sys.executable, "-m", "stages.embed", model, "shards", "gallery_photos", "gallery.csv", "split", out_dir,
            "cache"]  # fmt: skip


def embed_project(folder: Path, dataset: Path, processes: int, gallery_photos: Path | None = None) -> Path:
    """A project holding what the embed stage reads: shards, the split's CSVs, a model, params.yaml, and the
    gallery photos stage's output (of gallery_photos, a folder in the Kaggle layout; by default none)."""
    if gallery_photos is None:
        gallery_photos = folder / "no_photos"
        write_csv(gallery_photos / "train.csv", pd.DataFrame({"id": [], "landmark_id": []}))
    update_gallery_photos(gallery_photos, folder / "gallery_photos", 2**20, 10**8)
    kept, classes = filter_classes(read_labels(dataset / "train.csv"), 4)
    _, dev = split_dev(kept, classes["landmark_id"], 0.25, 0.0, seed=0)
    pool = pd.read_csv(dataset / "nonlandmark.csv", dtype=str)
    write_csv(folder / "split/dev.csv", dev)
    write_csv(folder / "split/pool.csv", pool.iloc[::2])
    write_csv(folder / "split/holdout.csv", pool.iloc[1::2])
    write_csv(folder / "gallery.csv", read_labels(dataset / "train.csv"))
    pack(dataset, "train", read_labels(dataset / "train.csv"), folder / "shards", 2**20, 0)
    pack(dataset, "nonlandmark", pool, folder / "shards", 2**20, 0)
    pack(dataset, "test", pd.read_csv(dataset / "test.csv", dtype=str), folder / "shards", 2**20, 0)
    variant = parse(Variant, RESUME_VARIANT | {"neck": {"name": "embedding", "dim": 16}}, "variants.tiny")
    torch.manual_seed(0)
    save_model(folder / "model.pt", create_model(variant, len(classes)), variant, "worker",
               LabelEncoding.from_classes(classes), run_id="")  # fmt: skip
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["runtime"] |= {"device": "cpu", "gpus": processes, "num_workers": 0, "inference_batch_size": 8}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def test_the_embed_stage_on_two_gloo_processes_writes_what_one_process_writes(tmp_path, tiny_dataset):
    written = {}
    for processes in (1, 2):
        project = embed_project(tmp_path / str(processes), tiny_dataset, processes)
        command = embed_command("model.pt", "embeddings")
        result = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("embed: 16-d embeddings of") == 1  # the first process's line only
        assert ("on 2 processes" in result.stdout) == (processes == 2)
        written[processes] = project / "embeddings"
    assert sorted(path.name for path in written[2].iterdir()) == sorted(path.name for path in written[1].iterdir())
    for name in ("gallery", "dev", "holdout", "pool", "test"):
        one, two = (pd.read_csv(written[count] / f"{name}.csv", dtype={"id": str}) for count in (1, 2))
        pd.testing.assert_frame_equal(one, two, atol=1e-5, rtol=1e-5)
        assert np.allclose(np.load(written[1] / f"{name}.npy"), np.load(written[2] / f"{name}.npy"), atol=1e-5)
        # the classifier answers the queries; the sets only searched skip its head
        answered = one["classifier_landmark"].isin(pd.read_csv(written[1] / "classes.csv")["landmark_id"])
        if name in ("gallery", "pool"):
            assert (one["classifier_landmark"] == -1).all() and (one["classifier_confidence"] == 0).all()
        else:
            assert answered.all() and (one["classifier_confidence"] > 0).all()
