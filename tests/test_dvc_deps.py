"""dvc.yaml tells the truth: every stage depends on each module of landmark/ that its script imports, directly or
through other modules, and on no module it does not run (an edit to it would rerun the stage for nothing); on the
params sections it reads; the runtime section (how fast) is no stage's param.

The parser (landmark/settings.py, landmark/params.py) is the settings stage's alone: every other stage depends on
that stage's slices of the params it lists (stages/settings.py), so an edit of the parser that changes no parsed
value reruns nothing after it, and one that changes a value reruns exactly the stages that read it."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    """The source file of a module of this project (stages.* or landmark.*), or None for anything else."""
    if module.split(".")[0] not in ("landmark", "stages"):
        return None
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def imported_modules(path: Path) -> set:
    """Every module an `import` or `from … import` in the file names, at any depth (imports inside functions
    count: they run when the stage does), with `from package import module` resolved to the module."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def has_code(path: Path) -> bool:
    """A module that is more than a docstring (an empty package __init__ cannot shape an output)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def closure(script: Path) -> set:
    """The project files a script runs: itself, what it imports, what those import, and the packages on the way."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(".".join(parts[:depth]))
                if found and found not in seen:
                    todo.append(found)
    return {path.relative_to(ROOT).as_posix() for path in seen if has_code(path)}


def stage_definitions():
    for name, stage in STAGES.items():
        yield name, stage.get("do", stage)


def script_of(stage: dict) -> Path:
    command = stage["cmd"].split()
    return ROOT.joinpath(*command[command.index("-m") + 1].split(".")).with_suffix(".py")


def covered(path: str, deps) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


PARSER = {"landmark/settings.py", "landmark/params.py"}


def read_through_slices(name: str) -> bool:
    """Whether the stage reads its settings through the settings stage's slices, not the parser's code."""
    return name != "settings" and name not in CARRIES_THE_PACKAGE


def param_keys(stage: dict) -> list:
    return [key for item in stage.get("params", []) for key in (item if isinstance(item, dict) else [item])]


def slice_of(key: str) -> str | None:
    """The settings stage's file (a setting) or folder (a section) of a params key a stage lists; variant_defaults
    is in every variant's file."""
    if key == "variant_defaults":
        return None
    section, *rest = key.split(".")
    return f"settings/{section}" if not rest else f"settings/{section}/{rest[0]}.json"


@pytest.mark.parametrize("name,stage", list(stage_definitions()), ids=[name for name, _ in stage_definitions()])
def test_every_module_a_stage_runs_is_a_dependency(name, stage):
    runs = closure(script_of(stage)) - (PARSER if read_through_slices(name) else set())
    missing = sorted(path for path in runs if not covered(path, stage["deps"]))
    assert not missing, f"dvc.yaml stage {name} runs {missing} but does not depend on them"


@pytest.mark.parametrize("name,stage", list(stage_definitions()), ids=[name for name, _ in stage_definitions()])
def test_a_stage_depends_on_the_parsed_slices_of_exactly_its_params(name, stage):
    """A parser change that alters a value a stage reads changes a file the stage depends on: DVC sees it."""
    if not read_through_slices(name):
        return
    assert not PARSER & set(stage["deps"]), f"{name} depends on the parser's code, which the settings stage runs"
    wanted = {slice_of(key) for key in param_keys(stage)} - {None}
    slices = {dep for dep in stage["deps"] if dep.startswith("settings/")}
    assert slices == wanted, f"dvc.yaml stage {name}: slices {sorted(slices)}, for its params {sorted(wanted)}"


# The register stage logs the landmark package itself as its model's code: every module shapes that output.
CARRIES_THE_PACKAGE = {"register": "landmark"}


def code_files(dep: str) -> set:
    """The modules with code of a dependency on the project's code: itself, or those under a folder."""
    path = ROOT / dep
    found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return {file.relative_to(ROOT).as_posix() for file in found if "__pycache__" not in file.parts and has_code(file)}


@pytest.mark.parametrize("name,stage", list(stage_definitions()), ids=[name for name, _ in stage_definitions()])
def test_no_stage_depends_on_a_module_it_does_not_run(name, stage):
    ran = closure(script_of(stage))
    code = [dep for dep in stage["deps"] if dep.split("/")[0] in ("landmark", "stages")]
    extra = sorted(file for dep in code if dep != CARRIES_THE_PACKAGE.get(name) for file in code_files(dep) - ran)
    assert not extra, f"dvc.yaml stage {name} depends on {extra}, which it does not run: an edit would rerun it"


def test_the_check_for_extra_dependencies_sees_a_module_no_stage_runs():
    assert code_files("landmark/recognition") >= {"landmark/recognition/search.py", "landmark/recognition/steps.py"}
    ran = closure(script_of(STAGES["index"]["do"]))
    assert "landmark/recognition/search.py" in ran and "landmark/recognition/steps.py" not in ran
    assert "landmark/recognition/__init__.py" not in code_files("landmark/recognition")  # a docstring only


def test_the_download_stage_does_not_run_the_model_or_training_code():
    ran = closure(script_of(STAGES["download"]))
    assert not [path for path in ran if path.startswith("landmark/models") or path in ("landmark/train.py",)]
    assert "landmark/settings.py" in ran


def test_no_stage_depends_on_the_runtime_settings():
    for name, stage in stage_definitions():
        assert not [key for key in param_keys(stage) if key == "runtime" or key.startswith("runtime.")], name
    sections = set(param_keys(STAGES["settings"]))
    assert sections == set(yaml.safe_load((ROOT / "params.yaml").read_text())) - {"runtime"}


def test_the_closure_follows_imports_through_modules_and_packages():
    ran = closure(ROOT / "stages/train.py")
    # through landmark/train.py → landmark/inference.py → landmark/data/loading.py → landmark/data/images.py
    assert {"stages/train.py", "landmark/train.py", "landmark/data/images.py", "landmark/models/__init__.py"} <= ran
    assert "landmark/__init__.py" not in ran  # a docstring only
