"""The default pipeline from scratch: time `dvc repro`, then a no-op `dvc repro`; print the dev and test GAPs.

Usage: python benchmarks/pipeline.py [REPO]
REPO (default: this checkout) must hold no stage outputs yet for a from-scratch figure, e.g. a fresh clone:
`git clone . /tmp/landmark && python benchmarks/pipeline.py /tmp/landmark`. Needs the project's environment
active (`python` and `dvc` on PATH).
"""

import json
import subprocess
import sys
import time
from pathlib import Path


def timed(command, cwd):
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(repo=Path(__file__).parents[1]):
    repo = Path(repo)
    full = timed(["dvc", "repro"], repo)
    noop = timed(["dvc", "repro"], repo)
    metrics = {path.stem: json.loads(path.read_text()) for path in (repo / "metrics").glob("*.json")}
    submission = json.loads((repo / "reports/submission.json").read_text())
    best = max(metrics, key=lambda name: metrics[name]["gap"])
    figures = ", ".join(f"{name} {value['gap']:.3f}" for name, value in sorted(metrics.items()))
    print(
        f"dvc repro: {full:.0f} s; no-op dvc repro: {noop:.1f} s; dev GAP: {figures}; best {best}; "
        f"test GAP of the submission {submission['gap']:.4f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
