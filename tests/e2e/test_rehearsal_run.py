"""The rehearsal of GLDv2 at 1/20,000 (10 classes, 203 train images) as the GPU run takes it, in its CPU smoke mode
(benchmarks/gpu_rehearsal.sh --smoke): the working tree in a new git repository with the rehearsal profile, one
`dvc repro` through the real shard download from a mirror served on this machine, and on to a scored submission."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from landmark.submission import validate_submission
from tests.e2e.project import ROOT, stages_run


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_rehearsal_runs_from_the_mirror_to_a_submission(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env |= {"OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    smoke = subprocess.run(
        ["bash", "benchmarks/gpu_rehearsal.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
    output = (tmp_path / "work/repro-f5e-05.log").read_text()
    figures = json.loads((tmp_path / "out/repro-f5e-05.json").read_text())

    assert {"download", "filter", "split", "pack", "submission", "report"} <= stages_run(output)
    assert {"train@resnet50", "recognize@recipe_lite0_pretrained"} <= stages_run(output)
    assert set(figures["stages"]) == stages_run(output)  # each stage's span of the run, timed
    assert figures["returncode"] == 0 and figures["train_images"] == 203
    assert all(stage["seconds"] > 0 and stage["peak_rss"] > 0 for stage in figures["stages"].values())
    assert re.search(r"download: rehearsal data in data/raw: 203 train_rows, 203 train_images, 6 test_images", output)
    assert "kept 1 of 10 classes with >= 100 usable images, 110 of 203 images" in output  # 1/10 of GLDv2's 3%
    repo = tmp_path / "work/f5e-05"
    downloads = next((repo / "data/downloads/rehearsal").iterdir()) / "downloads"
    for split in ("train", "test"):  # fetched over HTTP, verified against the mirror's md5 files, never unpacked
        assert (downloads / f"gldv2/{split}/images_000.tar.verified").exists()
        assert sorted(path.name for path in (repo / "data/raw" / split).iterdir()) == ["index.csv", "shard-000000.tar"]
    pool = sorted(path.name for path in (repo / "data/raw/nonlandmark").iterdir())
    assert pool == ["index.csv", "shard-000000.tar"]  # the pool's folder of photos, packed as it was added
    test_ids = pd.read_csv(repo / "data/raw/test.csv", dtype=str)["id"].tolist()
    validate_submission(repo / "submission.csv", test_ids)
    score = json.loads((repo / "reports/submission.json").read_text())
    assert figures["submission"] == score and 0 <= score["gap"] <= 1
    assert score["variant"] in ("resnet50", "recipe_lite0_pretrained")
