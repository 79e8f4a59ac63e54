"""Results over seeds: each kept run's figures read back, every row's mean and spread."""

import json
import statistics
import subprocess

import pytest

from landmark.errors import UserError
from landmark.seeds import (
    choice,
    keep_figures,
    rank_correlation,
    read_runs,
    run_seeds,
    seeds_table,
    spread,
    write_table,
)


def write_run(folder, dev: dict, test: dict, submission=None):
    for variant, gap in dev.items():
        (folder / "metrics").mkdir(parents=True, exist_ok=True)
        (folder / "metrics" / f"{variant}.json").write_text(json.dumps({"gap": gap, "loss": 1.0}))
    for variant, methods in test.items():
        (folder / "recognitions" / variant).mkdir(parents=True, exist_ok=True)
        figures = {
            method: {"validation_gap": dev - 0.5, "dev_gap": dev, "test_gap": test}
            for method, (dev, test) in methods.items()
        }
        (folder / "recognitions" / variant / "metrics.json").write_text(json.dumps({"methods": figures}))
    if submission:
        (folder / "reports").mkdir(parents=True, exist_ok=True)
        (folder / "reports" / "submission.json").write_text(json.dumps(submission))


def test_spread_is_the_mean_and_sample_deviation_with_the_range():
    assert spread([0.5, 0.7, 0.6]) == f"0.600 ± {statistics.stdev([0.5, 0.7, 0.6]):.3f} (0.500–0.700, n=3)"
    assert spread([0.1, 0.1]) == "0.100 ± 0.000 (0.100–0.100, n=2)"
    assert spread([0.25, None]) == "0.250 (one run)"
    assert spread([]) == "—"


def test_table_of_hand_made_runs_gives_each_row_its_mean_and_spread(tmp_path):
    out = tmp_path / "seeds"
    write_run(out / "seed-0", {"resnet50": 0.60, "xception": 0.50}, {"recipe": {"knn": (0.80, 0.40)}},
              {"variant": "recipe", "method": "knn", "gap": 0.40})  # fmt: skip
    write_run(out / "seed-1", {"resnet50": 0.70, "xception": 0.30}, {"recipe": {"knn": (0.90, 0.50)}},
              {"variant": "recipe", "method": "knn", "gap": 0.50})  # fmt: skip
    write_run(out / "seed-2", {"resnet50": 0.65}, {"recipe": {"knn": (0.85, 0.30)}})
    (out / "seed-x").mkdir()  # not a seed's folder: skipped
    runs = write_table(out)
    assert list(runs) == [0, 1, 2]
    table = (out / "seeds.md").read_text()
    assert table == seeds_table(read_runs(out))
    assert "Seeds (train.seed): 0, 1, 2." in table
    assert "| resnet50 | 0.650 ± 0.050 (0.600–0.700, n=3) |" in table
    assert "| xception | 0.400 ± 0.141 (0.300–0.500, n=2) |" in table  # seed 2 has no xception row
    assert (
        "| recipe | knn | 0.350 ± 0.050 (0.300–0.400, n=3) | 0.850 ± 0.050 (0.800–0.900, n=3) "
        "| 0.400 ± 0.100 (0.300–0.500, n=3) |"
    ) in table
    assert "seed 0: recipe by knn (test GAP 0.4000); seed 1: recipe by knn (test GAP 0.5000)." in table
    assert "Its test GAP over the seeds: 0.450 ± 0.071 (0.400–0.500, n=2)." in table
    assert "No run kept yet" in seeds_table({})


def test_each_run_says_what_validation_chose_against_the_best_row_and_how_alike_they_rank(tmp_path):
    out = tmp_path / "seeds"
    # validation GAP is dev - 0.5 (write_run): seed 0 ranks the rows as the test does; seed 1 chose the worse row
    write_run(out / "seed-0", {}, {"a": {"knn": (0.9, 0.8), "softmax": (0.7, 0.1)}, "b": {"knn": (0.8, 0.5)}},
              {"variant": "a", "method": "knn", "gap": 0.8})  # fmt: skip
    write_run(out / "seed-1", {}, {"a": {"knn": (0.6, 0.7), "softmax": (0.7, 0.2)}, "b": {"knn": (0.9, 0.6)}},
              {"variant": "b", "method": "knn", "gap": 0.6})  # fmt: skip
    runs = read_runs(out)
    assert choice(runs[0]) == {"chosen": ("a", "knn"), "chosen_gap": 0.8, "best": ("a", "knn"), "best_gap": 0.8,
                               "regret": 0.0, "rank_correlation": 1.0}  # fmt: skip
    second = choice(runs[1])
    assert second["best"] == ("a", "knn") and second["regret"] == pytest.approx(0.1)
    assert second["rank_correlation"] == pytest.approx(-0.5)  # validation ranks b, softmax, a; the test a, b, softmax
    table = seeds_table(runs)
    assert "| 1 | b by knn | 0.6000 | 0.7000 (a by knn) | 0.1000 | -0.500 |" in table
    assert "over 2 runs: mean 0.0500, worst 0.1000" in table
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and rank_correlation([1, 1], [1, 2]) is None
    assert choice({"recognition": {}, "submission": {}, "dev": {}}) is None  # no test solution: nothing to say


def test_figures_are_kept_by_their_paths_in_the_repository(tmp_path):
    repo = tmp_path / "repo"
    write_run(repo, {"resnet50": 0.6}, {"recipe": {"knn": (0.8, 0.4)}}, {"variant": "recipe", "method": "knn"})
    (repo / "recognitions/recipe/predictions.csv").write_text("not a figure")
    (tmp_path / "kept/metrics").mkdir(parents=True)
    (tmp_path / "kept/metrics/dropped_variant.json").write_text("{}")  # this seed's earlier run: replaced
    keep_figures(repo, tmp_path / "kept")
    kept = sorted(str(path.relative_to(tmp_path / "kept")) for path in (tmp_path / "kept").rglob("*") if path.is_file())
    assert kept == ["metrics/resnet50.json", "recognitions/recipe/metrics.json", "reports/submission.json"]


def test_seeds_refuse_to_start_outside_git_or_over_uncommitted_params(tmp_path):
    with pytest.raises(UserError, match=r"not a git repository; run `landmark seeds` in the project's checkout"):
        run_seeds([1], tmp_path, tmp_path / "out")
    for command in (
        ["init", "-q"],
        ["add", "params.yaml"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"],
    ):
        if command[-1] == "params.yaml":
            (tmp_path / "params.yaml").write_text("train: {seed: 0}\n")
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("train: {seed: 5}\n")
    with pytest.raises(UserError, match=r"params.yaml or dvc.lock has uncommitted changes; commit them first"):
        run_seeds([1], tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
