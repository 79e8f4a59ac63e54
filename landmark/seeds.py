"""Results that hold across seeds: the pipeline run once per `train.seed` as DVC experiments, each run's figures
kept, then every row's mean and spread.

`landmark seeds 0 1 2` runs `dvc exp run -S train.seed=N` for each seed in turn (what the seed shapes reruns: every
training and what follows it; the data stages are shared), copies that run's figures to `reports/seeds/seed-N/`
(metrics/<variant>.json, recognitions/<variant>/metrics.json, reports/submission.json), then puts the workspace
back as it was (params.yaml and dvc.lock from git, the outputs from DVC's cache) and writes
`reports/seeds/seeds.md` from every `seed-N` folder there. One seed is a sample; the spread says how far apart two
runs of the same code land (training from scratch on 90 steps moves more between seeds than some rows differ).
Per seed it also says how well validation chose: the submission's test GAP against the best test GAP of any
recognition in that run's table (the regret), and how validation GAP and test GAP rank the recognitions alike.

The seeds run in the workspace, one after the other, not through DVC's queue: a queued experiment checks every
stage's data out into its own copy of the project (treeverse/dvc#6465), at GLDv2 scale hundreds of GB of shards
per seed, where the workspace shares them.
"""

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import pandas as pd

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


def rank_correlation(first, second) -> float | None:
    """Spearman's rank correlation of two equally long lists (ties take their mean rank); None below two pairs or
    where a list does not vary."""
    first, second = pd.Series(first, dtype=float).rank(), pd.Series(second, dtype=float).rank()
    if len(first) < 2 or first.nunique() < 2 or second.nunique() < 2:
        return None
    return float(first.corr(second))


def choice(run: dict) -> dict | None:
    """How well one run's submission was chosen: the chosen recognition's test GAP, the best test GAP of any
    recognition in its table (variant, method), their difference (the regret), and the rank correlation of
    validation GAP with test GAP over every recognition. None where the run has no submission or no test solution."""
    scored = {key: figures for key, figures in run["recognition"].items() if "test_gap" in figures}
    chosen = run["submission"]
    if not scored or "gap" not in chosen:
        return None
    best = max(scored, key=lambda key: scored[key]["test_gap"])
    validation, test = zip(
        *((figures["validation_gap"], figures["test_gap"]) for figures in scored.values()), strict=True
    )
    return {
        "chosen": (chosen["variant"], chosen["method"]),
        "chosen_gap": chosen["gap"],
        "best": best,
        "best_gap": scored[best]["test_gap"],
        "regret": scored[best]["test_gap"] - chosen["gap"],
        "rank_correlation": rank_correlation(validation, test),
    }


def choice_table(runs: dict) -> list:
    """Markdown lines: per seed, the submission's choice against the best recognition of its table; then the
    regret's mean and worst, and the rank correlation's mean."""
    choices = {seed: choice(run) for seed, run in runs.items()}
    choices = {seed: figures for seed, figures in choices.items() if figures}
    if not choices:
        return []
    lines = ["", "## The submission's choice, against the best recognition of each run", "",
             "| seed | chosen (by validation GAP) | its test GAP | best test GAP in the table | regret "
             "| rank correlation, validation vs test GAP |", "|---|---|---|---|---|---|"]  # fmt: skip
    for seed, figures in choices.items():
        correlation = figures["rank_correlation"]
        lines.append(
            f"| {seed} | {' by '.join(figures['chosen'])} | {figures['chosen_gap']:.4f} | {figures['best_gap']:.4f} "
            f"({' by '.join(figures['best'])}) | {figures['regret']:.4f} | "
            + ("—" if correlation is None else f"{correlation:.3f}")
            + " |"
        )
    regrets = [figures["regret"] for figures in choices.values()]
    correlations = [figures["rank_correlation"] for figures in choices.values()]
    lines += ["", f"Regret (best test GAP in the table less the submission's), over {len(regrets)} runs: mean "
              f"{statistics.mean(regrets):.4f}, worst {max(regrets):.4f}. Rank correlation (Spearman) of validation "
              f"GAP with test GAP over every recognition: {spread(correlations)}."]  # fmt: skip
    return lines


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
        spread_of_test_gap = spread(figures.get("gap") for figures in chosen.values())
        lines += ["", f"Submission, chosen by validation GAP in each run — {picks}.",
                  f"Its test GAP over the seeds: {spread_of_test_gap}."]  # fmt: skip
    return "\n".join(lines + choice_table(runs)) + "\n"


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
