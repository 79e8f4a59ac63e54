"""The default pipeline from a fresh clone: time `dvc repro`, then a no-op `dvc repro`; print the best dev GAP.

Usage: python benchmarks/pipeline.py [REPO]   (REPO defaults to this checkout; its committed HEAD is cloned)
Needs the project's environment active (`python` and `dvc` on PATH).
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command, cwd):
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(repo=Path(__file__).parents[1]):
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "landmark"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        full = timed(["dvc", "repro"], clone)
        noop = timed(["dvc", "repro"], clone)
        metrics = {path.stem: json.loads(path.read_text()) for path in (clone / "metrics").glob("*.json")}
        submission = json.loads((clone / "reports/submission.json").read_text())
    best = max(metrics, key=lambda name: metrics[name]["gap"])
    figures = ", ".join(f"{name} {value['gap']:.3f}" for name, value in sorted(metrics.items()))
    print(
        f"dvc repro (default, fresh clone): {full:.0f} s; no-op dvc repro: {noop:.1f} s; dev GAP: {figures}; "
        f"best {best}; test GAP of the submission {submission['gap']:.4f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
