"""requirements.lock (pip-compile's) and pyproject.toml agree: every requirement of the project and its test extra
is pinned there, within its range, and each floor is the pinned version, the one the tests ran on."""

import re
import shlex
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
RELOCK = "rerun the pip-compile command in requirements.lock's header"


def locked() -> dict:
    text = (ROOT / "requirements.lock").read_text()
    return {canonicalize_name(name): version for name, version in re.findall(r"^([\w.-]+)==(\S+)", text, re.M)}


def requirements() -> list:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_requirement_is_pinned_within_its_range_and_its_floor_is_the_pin():
    pins = locked()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock; {RELOCK}"
        assert requirement.specifier.contains(pins[name]), f"{requirement}: the lock has {pins[name]}; {RELOCK}"
        floors = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==")]
        assert floors == [pins[name]], f"{requirement}: the floor is not the tested {pins[name]}; raise it to that"


def test_the_lock_was_made_from_this_project_with_its_constraints_and_holds_them():
    header = (ROOT / "requirements.lock").read_text().split("\n\n")[0]
    (command,) = [line.strip("# ").strip() for line in header.splitlines() if "pip-compile" in line and "--" in line]
    arguments = shlex.split(command)
    assert arguments[-1] == "pyproject.toml" and "--extra=test" in arguments
    assert "--constraint=lock-constraints.txt" in arguments
    pins = locked()
    for line in (ROOT / "lock-constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert pins[canonicalize_name(name)] == version, f"lock-constraints.txt: {line}; {RELOCK}"


def test_ci_and_the_readme_install_from_the_lock():
    assert "pip install --quiet -r requirements.lock" in (ROOT / ".ci/run").read_text()
    assert "pip install -r requirements.lock && pip install --no-deps -e ." in (ROOT / "README.md").read_text()
