"""A copy of the project in a temporary git repository with DVC initialised, for tests that run the pipeline."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
PROJECT_FILES = [
    "dvc.yaml", ".dvcignore", ".gitignore", "data/.gitignore", "stages", "landmark", "profiles", "gallery_photos"
]  # fmt: skip
DVC = [sys.executable, "-m", "dvc"]


def run(command, repo, env):
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def stages_run(output):
    return set(re.findall(r"Running stage '([^']+)'", output))


def new_project(repo, params: dict, env_extra=None) -> dict:
    """The project's code and params in a new git repository at repo, committed, with DVC initialised. Returns the
    environment its commands run with: no MLflow or DVC variables of the caller's, this Python's bin first."""
    repo.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env |= env_extra or {}
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "landmark test"],
        ["git", "config", "user.email", "test@landmark.invalid"],
        DVC + ["init", "-q"],
        DVC + ["config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny pipeline"],
    ):
        run(command, repo, env)
    return env
