"""The rehearsal of GLDv2 at 1/20,000 (10 classes, 203 train images): through the profile, the real shard download
from a mirror served on this machine, and on to a scored submission."""

import json
import re
import subprocess

import pandas as pd
import pytest
import yaml

from landmark.submission import validate_submission
from tests.e2e.project import DVC, ROOT, new_project, run, stages_run


@pytest.mark.e2e
def test_the_rehearsal_runs_from_the_mirror_to_a_submission(tmp_path):
    repo = tmp_path / "repo"
    env = new_project(repo, yaml.safe_load((ROOT / "params.yaml").read_text()))
    profile = subprocess.run(
        ["landmark", "profile", "profiles/rehearsal.yaml"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert profile.returncode == 0, profile.stderr
    faster = ["variant_defaults.steps=3", "variants.recipe_lite0_pretrained.steps=3", "variant_defaults.batch_size=8"]
    command = DVC + ["exp", "run", *profile.stdout.split()] + [flag for value in faster for flag in ("-S", value)]
    output = run(command, repo, env)

    assert {"download", "filter", "split", "pack", "submission", "report"} <= stages_run(output)
    assert {"train@resnet50", "recognize@recipe_lite0_pretrained"} <= stages_run(output)
    assert re.search(r"download: rehearsal data in data/raw: 203 train_rows, 203 train_images, 6 test_images", output)
    assert "kept 1 of 10 classes with >= 100 usable images, 110 of 203 images" in output  # 1/10 of GLDv2's 3%
    downloads = next((repo / "data/downloads/rehearsal").iterdir()) / "downloads"
    for split in ("train", "test"):  # fetched over HTTP, verified against the mirror's md5 files, never unpacked
        assert (downloads / f"gldv2/{split}/images_000.tar.verified").exists()
        assert sorted(path.name for path in (repo / "data/raw" / split).iterdir()) == ["index.csv", "shard-000000.tar"]
    pool = sorted(path.name for path in (repo / "data/raw/nonlandmark").iterdir())
    assert pool == ["index.csv", "shard-000000.tar"]  # the pool's folder of photos, packed as it was added
    test_ids = pd.read_csv(repo / "data/raw/test.csv", dtype=str)["id"].tolist()
    validate_submission(repo / "submission.csv", test_ids)
    score = json.loads((repo / "reports/submission.json").read_text())
    assert 0 <= score["gap"] <= 1 and score["variant"] in ("resnet50", "recipe_lite0_pretrained")
