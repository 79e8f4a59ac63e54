from pathlib import Path

from landmark.tracking import project_root, tracking_uri


def test_queued_experiments_log_to_the_project_store(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project/.dvc/tmp/exps/run/7f3a2c"))
    assert project_root() == tmp_path / "project"
    assert tracking_uri() == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"


def test_plain_runs_and_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert project_root() == tmp_path and Path(tracking_uri().removeprefix("sqlite:///")).is_absolute()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team.invalid:5000")
    assert tracking_uri() == "http://mlflow.team.invalid:5000"
