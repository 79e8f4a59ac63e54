"""MLflow and DVC-plots logging in one place.

MLflow's default store is the sqlite file `mlflow.db` at the project root, as an absolute URI, with artifacts in
`mlartifacts/` beside it; `MLFLOW_TRACKING_URI` overrides it (a team server). Queued `dvc exp run` experiments
run in a copy under `<root>/.dvc/tmp/exps/`, and still log to the project's own store.

Experiments side by side (`dvc queue start -j 2`) share that one sqlite file. Two processes that open a new store
at once both create its tables (and fail: mlflow #4123), and two that find no experiment both create it, so the
first use of a sqlite store takes turns through a file lock beside it (`mlflow.db.lock`). After that, a writer
waits up to a minute for another's write to end (sqlite's busy timeout) instead of failing with "database is
locked".
"""

import os
import subprocess
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd
from filelock import FileLock

from landmark.files import write_csv

EXPERIMENT = "landmark"
SQLITE_BUSY_SECONDS = 60  # how long a write waits for another process's to end


def project_root() -> Path:
    root = Path(os.environ.get("DVC_ROOT", os.getcwd())).resolve()
    parts = root.parts
    for index in range(len(parts) - 3):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    return root


def tracking_uri() -> str:
    default = f"sqlite:///{project_root() / 'mlflow.db'}?timeout={SQLITE_BUSY_SECONDS}"
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _run_tags(**tags) -> dict:
    """A run's tags: the given ones, the git commit, and the DVC experiment where `dvc exp run` runs the stage (so
    the MLflow UI finds an experiment's runs)."""
    tags["git_commit"] = _git_commit()
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def _flatten(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _mlflow():
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    local = uri.startswith("sqlite:///")
    with FileLock(uri.removeprefix("sqlite:///").split("?")[0] + ".lock") if local else nullcontext():
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:  # the first call also creates a new store's tables
            artifacts = (project_root() / "mlartifacts").as_uri() if local else None
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


class TrainingLog:
    """One MLflow run per training of a variant, plus its DVC plots CSVs: plots_dir/train/<variant>.csv (per
    step) and plots_dir/dev/<variant>.csv (per evaluation interval)."""

    def __init__(self, variant_name: str, params: dict, plots_dir, run_id=None, rows=None):
        """A new run, or (run_id, rows) of a resumed one."""
        self.mlflow = _mlflow()
        self.plot_paths = {kind: Path(plots_dir) / kind / f"{variant_name}.csv" for kind in ("train", "dev")}
        self.rows = rows or {"train": [], "dev": []}
        if run_id:
            self.run = self.mlflow.start_run(run_id=run_id)
            return
        self.run = self.mlflow.start_run(run_name=variant_name, tags=_run_tags(variant=variant_name))
        self.mlflow.log_params(_flatten(params))

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log(self, kind: str, step: int, metrics: dict):
        """kind is `train` (per-step loss, batch GAP) or `dev` (per-interval dev loss, GAP)."""
        self.rows[kind].append({"step": step, **metrics})
        self.mlflow.log_metrics({f"{kind}_{name}": value for name, value in metrics.items()}, step=step)

    def log_unplotted(self, step: int, metrics: dict):
        """Figures for MLflow only, not the DVC plots: throughput (timings, which differ from run to run, so a
        resumed training's curves stay those of an uninterrupted one) and the learning rate."""
        self.mlflow.log_metrics({f"train_{name}": value for name, value in metrics.items()}, step=step)

    def write_plots(self):
        for kind, rows in self.rows.items():
            write_csv(self.plot_paths[kind], pd.DataFrame(rows))

    def finish(self, evaluation: dict, artifacts=()):
        """End the run with the final dev pass's figures (eval_*; the paper's per-batch GAP is the evaluate
        stage's, at its own batch size) and the artifacts."""
        self.mlflow.log_metrics({f"eval_{name}": evaluation[name] for name in ("gap", "loss", "accuracy", "images")})
        self.write_plots()
        for kind, path in self.plot_paths.items():
            self.mlflow.log_artifact(str(path), artifact_path=f"plots/{kind}")
        for path in artifacts:
            self.mlflow.log_artifact(str(path))
        self.mlflow.end_run()

    def fail(self):
        self.mlflow.end_run(status="FAILED")


def log_data_check(counts: dict, bad_list) -> None:
    """One MLflow run per data check (the filter stage): its counts and the list of unusable images."""
    mlflow = _mlflow()
    with mlflow.start_run(run_name="filter", tags=_run_tags(stage="filter")):
        mlflow.log_metrics(counts)
        mlflow.log_artifact(str(bad_list))


@contextmanager
def registration_run(figures: dict):
    """An MLflow run for the register stage's recogniser (landmark.serving), with the submission's figures."""
    mlflow = _mlflow()
    with mlflow.start_run(run_name="register", tags=_run_tags(stage="register")) as run:
        mlflow.log_metrics(figures)
        yield run
