"""Results that hold across seeds: the pipeline run once per `train.seed` as DVC experiments, each run's figures
kept, then every row's mean and spread.

`landmark seeds 0 1 2` runs `dvc exp run -S train.seed=N` for each seed in turn (what the seed shapes reruns: every
training and what follows it; the data stages are shared), copies that run's figures to `reports/seeds/seed-N/`
(metrics/<variant>.json, recognitions/<variant>/metrics.json, reports/submission.json), then puts the workspace
back as it was (params.yaml and dvc.lock from git, the outputs from DVC's cache) and writes
`reports/seeds/seeds.md` from every `seed-N` folder there. One seed is a sample; the spread says how far apart two
runs of the same code land (training from scratch on 90 steps moves more between seeds than some rows differ).
"""

import json
import shutil
import statistics
import subprocess
from pathlib import Path

from landmark.errors import UserError
from landmark.files import write_text

FIGURES = ("metrics/*.json", "recognitions/*/metrics.json", "reports/submission.json")


def keep_figures(repo: Path, folder: Path) -> None:
    """Copy one run's figure files (FIGURES) from the repository to folder, by the same relative paths; what
    folder held before (that seed's earlier run) goes."""
    shutil.rmtree(folder, ignore_errors=True)
    for pattern in FIGURES:
        for path in sorted(repo.glob(pattern)):
            target = folder / path.relative_to(repo)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def read_run(folder: Path) -> dict:
    """One kept run: {"dev": {variant: dev GAP}, "recognition": {(variant, method): its figures (validation_gap,
    dev_gap, test_gap...)}, "submission": reports/submission.json or {}}."""
    dev = {path.stem: json.loads(path.read_text())["gap"] for path in sorted(folder.glob("metrics/*.json"))}
    recognition = {}
    for path in sorted(folder.glob("recognitions/*/metrics.json")):
        for method, figures in json.loads(path.read_text())["methods"].items():
            recognition[path.parent.name, method] = figures
    submission_path = folder / "reports/submission.json"
    submission = json.loads(submission_path.read_text()) if submission_path.exists() else {}
    return {"dev": dev, "recognition": recognition, "submission": submission}


def read_runs(out: Path) -> dict:
    """{seed: run} of every seed-N folder in out."""
    runs = {}
    for folder in sorted(out.glob("seed-*")):
        seed = folder.name.removeprefix("seed-")
        if seed.isdigit():
            runs[int(seed)] = read_run(folder)
    return dict(sorted(runs.items()))


def spread(values) -> str:
    """mean ± sample standard deviation (min–max, n) of the values present; — when there are none."""
    values = [value for value in values if value is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (one run)"
    deviation = statistics.stdev(values)
    return f"{statistics.mean(values):.3f} ± {deviation:.3f} ({min(values):.3f}–{max(values):.3f}, n={len(values)})"


def seeds_table(runs: dict) -> str:
    """Markdown: per variant, its dev GAP over the seeds; per recognition (variant × method), its validation GAP
    (what the submission is chosen by), dev and test GAP; the submission each seed chose, and its test GAP."""
    if not runs:
        return "# Results over seeds\n\nNo run kept yet: `landmark seeds 0 1 2`.\n"
    seeds = ", ".join(str(seed) for seed in runs)
    lines = [f"# Results over seeds\n\nSeeds (train.seed): {seeds}. Each figure: mean ± standard deviation "
             "(min–max, number of runs).\n", "| variant | dev GAP |", "|---|---|"]  # fmt: skip
    variants = list(dict.fromkeys(name for run in runs.values() for name in run["dev"]))
    for name in variants:
        lines.append(f"| {name} | {spread(run['dev'].get(name) for run in runs.values())} |")
    recognitions = list(dict.fromkeys(key for run in runs.values() for key in run["recognition"]))
    if recognitions:
        lines += ["", "| variant | method | validation GAP | dev GAP | test GAP |", "|---|---|---|---|---|"]
        for variant, method in recognitions:
            rows = [run["recognition"].get((variant, method), {}) for run in runs.values()]
            figures = [spread(row.get(key) for row in rows) for key in ("validation_gap", "dev_gap", "test_gap")]
            lines.append(f"| {variant} | {method} | {' | '.join(figures)} |")
    chosen = {seed: run["submission"] for seed, run in runs.items() if run["submission"]}
    if chosen:
        picks = "; ".join(
            f"seed {seed}: {figures['variant']} by {figures['method']}"
            + (f" (test GAP {figures['gap']:.4f})" if "gap" in figures else "")
            for seed, figures in chosen.items()
        )
        lines += ["", f"Submission, chosen by validation GAP in each run — {picks}.",
                  f"Its test GAP over the seeds: {spread(figures.get('gap') for figures in chosen.values())}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _run(command, repo: Path) -> None:
    result = subprocess.run(command, cwd=repo, check=False)
    if result.returncode:
        raise UserError(f"`{' '.join(command)}` failed (exit {result.returncode}); its output is above")


def write_table(out: Path) -> dict:
    """out/seeds.md from every run kept in out; returns the runs."""
    runs = read_runs(out)
    write_text(out / "seeds.md", seeds_table(runs))
    return runs


def run_seeds(seeds, repo: Path, out: Path) -> None:
    """Run the pipeline for each seed as a DVC experiment in the workspace, keep its figures in out/seed-N, and
    restore the workspace. Refuses to start over uncommitted params.yaml or dvc.lock."""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "params.yaml", "dvc.lock"], cwd=repo, capture_output=True, text=True
    )
    if dirty.returncode:
        raise UserError(f"{repo}: not a git repository; run `landmark seeds` in the project's checkout")
    if dirty.stdout.strip():
        raise UserError(
            "params.yaml or dvc.lock has uncommitted changes; commit them first (each seed is run from HEAD)"
        )
    try:
        for seed in seeds:
            _run(["dvc", "exp", "run", "-S", f"train.seed={seed}"], repo)
            keep_figures(repo, out / f"seed-{seed}")
    finally:
        subprocess.run(["git", "checkout", "--", "params.yaml", "dvc.lock"], cwd=repo, check=False)
        subprocess.run(["dvc", "checkout", "--quiet"], cwd=repo, check=False)
