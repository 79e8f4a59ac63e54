import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow

from landmark.tracking import project_root, tracking_uri
from tests.test_resume import RUNTIME, VARIANT, environment, make_project, project_params, train_command


def test_queued_experiments_log_to_the_project_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project/.dvc/tmp/exps/run/7f3a2c"))
    assert project_root() == tmp_path / "project"
    assert tracking_uri() == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}?timeout=60"  # waits for the other


def test_plain_runs_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert project_root() == tmp_path and Path(tracking_uri().removeprefix("sqlite:///")).is_absolute()
    assert tracking_uri().endswith("mlflow.db?timeout=60")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team.invalid:5000")
    assert tracking_uri() == "http://mlflow.team.invalid:5000"


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """A real `mlflow server` on a free localhost port, as a team would run one; yields its URI."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "store"),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            assert server.poll() is None and time.time() < deadline, "mlflow server did not come up"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_training_logs_to_the_team_server_that_MLFLOW_TRACKING_URI_names(tmp_path, tiny_dataset):
    project = make_project(tmp_path / "project", tiny_dataset)
    (project / "params.yaml").write_text(project_params(VARIANT | {"steps": 3}, RUNTIME | {"checkpoint_every": 100}))
    with mlflow_server(tmp_path / "server") as uri:
        env = environment(project) | {"MLFLOW_TRACKING_URI": uri}
        subprocess.run(train_command(project, tiny_dataset), cwd=project, env=env, check=True, capture_output=True)
        client = mlflow.tracking.MlflowClient(uri)
        experiment = client.get_experiment_by_name("landmark")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["variant"] == "tiny"
        assert [point.step for point in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
        assert "model.pt" in {item.path for item in client.list_artifacts(run.info.run_id)}
    assert (tmp_path / "server/store").is_dir()  # the artifacts went through the server to its store
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()  # nothing stayed local


def log_a_training(job) -> str:
    """In a fresh process, as a queued experiment's stage would: one training run logged to the project's store."""
    root, index = job
    os.environ["DVC_ROOT"] = root
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from landmark.tracking import TrainingLog

    try:
        log = TrainingLog(f"side{index}", {"lr": index}, Path(root) / f"plots{index}")
        for step in range(20):
            log.log("train", step, {"loss": 1.0 / (step + 1)})
        log.finish({"gap": 0.5, "loss": 1.0, "accuracy": 0.1, "images": 3})
        return "ok"
    except Exception as error:  # what the test reports: all of them, not the first
        return f"{type(error).__name__}: {error}"[:200]


def test_trainings_side_by_side_create_and_share_one_new_sqlite_store(tmp_path):
    # Without the lock, processes that open a new store at once each create its tables, and all of them fail.
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(log_a_training, [(str(tmp_path), index) for index in range(3)])
    assert results == ["ok"] * 3
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("landmark").experiment_id])
    assert sorted(run.data.params["lr"] for run in runs) == ["0", "1", "2"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert all(len(client.get_metric_history(run.info.run_id, "train_loss")) == 20 for run in runs)
