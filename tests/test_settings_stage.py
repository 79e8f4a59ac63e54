"""The settings stage writes what the parser returns, a file per setting, so every other stage can depend on the
parsed values it reads instead of the parser's code (tests/test_dvc_deps.py holds those dependencies)."""

import ast
import copy
import json
from pathlib import Path

import yaml

from landmark.settings import parse_params
from stages import settings as settings_stage
from tests.params_file import PARAMS

ROOT = Path(__file__).parents[1]


def written(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): json.loads(path.read_text()) for path in folder.rglob("*.json")}


def run_stage(folder: Path, params: dict, monkeypatch) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(folder)
    settings_stage.main("settings")
    return written(folder / "settings")


def test_each_file_holds_the_parsed_value_and_an_edit_changes_only_its_own(tmp_path, monkeypatch, capsys):
    params = copy.deepcopy(PARAMS)
    params["variants"]["resnet50"]["lr"] = 1  # the parser makes it 1.0: the file holds what stages read
    first = run_stage(tmp_path / "a", params, monkeypatch)
    parsed = parse_params(params)
    assert first["variants/resnet50.json"] == parsed.variants["resnet50"].model_dump(mode="json", warnings=False)
    assert first["variants/resnet50.json"]["lr"] == 1.0 and isinstance(first["variants/resnet50.json"]["lr"], float)
    assert first["train/seed.json"] == parsed.train.seed and first["embed/scales.json"] == list(parsed.embed.scales)
    assert not [name for name in first if name.startswith("runtime")]  # nobody's param
    assert f"settings: {len(first)} settings of 14 sections -> settings" in capsys.readouterr().out

    params["variant_defaults"]["lr"] = 0.002  # a default: every variant that inherits it, and nothing else
    second = run_stage(tmp_path / "b", params, monkeypatch)
    changed = {name for name in first if first[name] != second.get(name)}
    inherits = {f"variants/{name}.json" for name, own in params["variants"].items() if "lr" not in (own or {})}
    assert changed == inherits and "variants/resnet50.json" not in changed


def test_a_variant_taken_out_leaves_no_file(tmp_path, monkeypatch):
    params = copy.deepcopy(PARAMS)
    before = run_stage(tmp_path, params, monkeypatch)
    del params["variants"]["xception_spatial"]
    after = run_stage(tmp_path, params, monkeypatch)
    assert set(before) - set(after) == {"variants/xception_spatial.json"}


# What the parser's module may hold besides parsing and checking, each pinned below: a change to one of these
# would change what a stage computes while no parsed value moves, and DVC would not see it.
HELPERS = {"Rehearsal.scaled", "Embed.recognitions", "Settings.variant"}


def test_the_parser_holds_no_logic_a_parsed_value_does_not_show():
    """Every method of a settings class is a validator (it checks, and changes no value it passes), but for the
    helpers above; their results are pinned here, so a change to one fails this test."""
    tree = ast.parse((ROOT / "landmark/settings.py").read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    decorators = {ast.unparse(decorator) for decorator in item.decorator_list}
                    if not any(decorator.startswith("model_validator") for decorator in decorators):
                        found.add(f"{node.name}.{item.name}")
    assert found == HELPERS
    settings = parse_params(PARAMS)
    assert [settings.data.rehearsal.scaled(count) for count in (117_577, 203_094, 1)] == [6, 10, 0]
    ensembles = copy.deepcopy(PARAMS)
    ensembles["embed"]["ensembles"] = {"both": {"variants": ["resnet50", "recipe_xception"], "weights": [1, 1]}}
    assert parse_params(ensembles).embed.recognitions == (*PARAMS["embed"]["variants"], "both")
    assert settings.variant("xception") is settings.variants["xception"]
