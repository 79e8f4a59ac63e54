"""The wheels a GPU machine lacks for the pipeline, fetched here at the lock's versions for its Python, in parts
that each fit one device call.

Usage: python benchmarks/device_wheels.py [--have benchmarks/device_packages.txt] [--python 3.12] [--dest .whl]
                                          [--part-mib 48]

The stages need the project's dependencies (pyproject.toml), less the Kaggle client (the rehearsal and the
synthetic set never call it) and with MLflow's client (mlflow-skinny, plus SQLAlchemy and Alembic for the sqlite
store) in place of the whole of MLflow, whose server and UI no stage starts. Every package those need, at
requirements.lock's version, that the machine does not have (--have: the names it has, as its `pip list` gives
them) is fetched with `pip download --no-deps` for that machine's Python and platform into DEST/1, DEST/2, …: each
part at most --part-mib, since a device call carries at most 64 MiB (the working tree included). Run it in the
project's environment: the dependency tree is read from the packages installed here. Prints the parts and sizes,
and the device calls that carry them (benchmarks/gpu_rehearsal.sh installs each into /tmp/site there).
"""

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stage_needs() -> list:
    """The distributions the stages import: pyproject's dependencies, MLflow as its client and sqlite store."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [canonical(Requirement(line).name) for line in project["dependencies"]]
    swapped = {"mlflow": ["mlflow-skinny", "sqlalchemy", "alembic"], "kaggle": []}
    return [need for name in names for need in swapped.get(name, [name])]


def missing(roots: list, have: set, python: str) -> list:
    """Every distribution the roots need, on Linux x86-64 with that Python, that `have` lacks."""
    environment = {"python_version": python, "python_full_version": f"{python}.0", "extra": ""}
    environment |= {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
    found, todo = [], list(roots)
    while todo:
        name = canonical(todo.pop())
        if name in found or name in have:
            continue
        found.append(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(requirement.name)
    return sorted(found)


def locked_versions() -> dict:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    return {canonical(name): version for name, version in pins}


def download(names: list, versions: dict, python: str, into: Path) -> None:
    """Each name's wheel for that Python into `into`; one published only as source (antlr4's runtime, for one) is
    built into a wheel here, which must then be pure Python to run there."""
    platforms = [flag for platform in [*PLATFORMS, "any"] for flag in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--prefer-binary", "-d", str(into)]
    command += ["--python-version", python, "--implementation", "cp", *platforms]
    pinned = [f"{name}=={versions[name]}" if name in versions else name for name in names]
    pip(command + pinned)
    for source in [*into.glob("*.tar.gz"), *into.glob("*.zip")]:
        fetched = set(into.glob("*.whl"))
        pip([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), str(source)])
        source.unlink()
        for built in set(into.glob("*.whl")) - fetched:
            if not built.name.endswith("-none-any.whl"):
                sys.exit(f"{built.name}: built from source here, and not pure Python, so it would not run there")


def pip(command: list) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command[2:4])} failed: {result.stderr.strip().splitlines()[-1]}")


def in_parts(wheels: list, limit: int) -> list:
    """The wheels in as few parts of at most `limit` bytes as first-fit, largest first, gives."""
    parts = []
    for wheel in sorted(wheels, key=lambda path: -path.stat().st_size):
        size = wheel.stat().st_size
        if size > limit:
            sys.exit(f"{wheel.name} alone is {size / 2**20:.0f} MiB, above --part-mib; raise it")
        fitting = next((part for part in parts if sum(w.stat().st_size for w in part) + size <= limit), None)
        if fitting is None:
            parts.append(fitting := [])
        fitting.append(wheel)
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--have", type=Path, default=ROOT / "benchmarks/device_packages.txt")
    parser.add_argument("--python", default="3.12", help="the device's Python (major.minor)")
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--part-mib", type=float, default=48)
    args = parser.parse_args()
    have = {canonical(name) for name in re.findall(r"^[^#\s]\S*", args.have.read_text(), re.MULTILINE)}
    names = missing(stage_needs(), have, args.python)
    with tempfile.TemporaryDirectory() as fetched:
        download(names, locked_versions(), args.python, Path(fetched))
        parts = in_parts(sorted(Path(fetched).glob("*.whl")), int(args.part_mib * 2**20))
        shutil.rmtree(args.dest, ignore_errors=True)
        for number, part in enumerate(parts, 1):
            (args.dest / str(number)).mkdir(parents=True)
            for wheel in part:
                shutil.move(wheel, args.dest / str(number) / wheel.name)
    for number, part in enumerate(parts, 1):
        size = sum((args.dest / str(number) / wheel.name).stat().st_size for wheel in part)
        print(f"{args.dest.name}/{number}: {len(part)} wheels, {size / 2**20:.1f} MiB")
    print(f"{len(names)} packages for Python {args.python} that the machine lacks, in {len(parts)} parts; carry each")
    print("in a call of its own, the last with the run (benchmarks/gpu_rehearsal.sh says how)")


if __name__ == "__main__":
    main()
