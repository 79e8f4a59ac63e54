import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landmark.errors import UserError
from landmark.profiles import set_param_flags

ROOT = Path(__file__).parents[1]


def test_paper_profile_sets_the_papers_setup():
    flags = set_param_flags(ROOT / "profiles/paper.yaml", ROOT / "params.yaml")
    settings = dict(flag.split("=", 1) for flag in flags[1::2])
    assert flags[::2] == ["-S"] * len(settings)
    assert settings["data.source"] == "kaggle" and settings["filter.min_samples_per_class"] == "100"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in params["variants"]:
        assert settings[f"variants.{name}.steps"] == "300000" and settings[f"variants.{name}.lr"] == "0.0003"
        assert settings[f"variants.{name}.batch_size"] == "64" and settings[f"variants.{name}.pretrained"] == "hub"
    assert settings["variants.xception_cbp_selfattn.frozen_tensors"] == "85"


def test_profile_keys_must_exist(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n")
    (tmp_path / "typo.yaml").write_text("train:\n  lrr: 0.2\n")
    with pytest.raises(UserError, match="train.lrr is not a key of"):
        set_param_flags(tmp_path / "typo.yaml", tmp_path / "params.yaml")


def test_cli_prints_flags(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n  device: auto\n")
    (tmp_path / "gpu.yaml").write_text("train:\n  device: cuda\n")
    result = subprocess.run(
        [sys.executable, "-m", "landmark.cli", "profile", "gpu.yaml"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.stdout == "-S train.device=cuda\n"
