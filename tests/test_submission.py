import copy
import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from landmark.errors import UserError
from landmark.submission import (
    parse_submission,
    read_solution,
    read_submission,
    score,
    validate_submission,
    write_validated_submission,
)
from stages.submission import choose

ROOT = Path(__file__).parents[1]


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "body, message",
    [
        ("a,1 0.5\nb,2 0.5 extra\n", ":3: landmarks must be"),
        ("a,1 high\n", ":2: confidence 'high' is not a finite number"),
        ("a,x 0.5\n", ":2: landmark_id 'x' is not an integer"),
        ("a,1 inf\n", ":2: confidence 'inf' is not a finite number"),
        ("a,1 0.5\nb,\na,2 0.1\n", ":4: duplicate id a"),
        ("a,1 0.5\nb,1 0.5,extra\n", ":3: expected 2 fields \\(id,landmarks\\), found 3"),
        ("a,1 0.5\nb,99999999999999999999999 0.5\n", ":3: landmark_id '99999999999999999999999' is not an integer"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, body, message):
    path = write(tmp_path / "sub.csv", "id,landmarks\n" + body)
    with pytest.raises(UserError, match=message):
        read_submission(path)


def test_bad_header_and_missing_file(tmp_path):
    with pytest.raises(UserError, match=":1: header must start with id,landmarks"):
        read_submission(write(tmp_path / "sub.csv", "image,prediction\na,1 0.5\n"))
    with pytest.raises(UserError, match="no such file"):
        read_submission(tmp_path / "missing.csv")


def test_reads_predictions_skipping_empty_ones(tmp_path):
    path = write(tmp_path / "sub.csv", "\ufeffid,landmarks\na,12 0.25\nb,\n\nc, 7 1e-3 \n")
    submission, ids = parse_submission(path)
    assert submission.to_dict("list") == {"id": ["a", "c"], "landmark_id": [12, 7], "confidence": [0.25, 0.001]}
    assert ids == {"a", "b", "c"}


def test_validate_against_test_ids(tmp_path):
    path = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.5\nb,\n")
    assert len(validate_submission(path, ["a", "b"])) == 1
    with pytest.raises(UserError, match="1 test ids missing, e.g. c"):
        validate_submission(path, ["a", "b", "c"])
    with pytest.raises(UserError, match="1 ids not in the test set, e.g. b"):
        validate_submission(path, ["a"])


def test_score_splits_usage_and_drops_ignored(tmp_path):
    solution = read_solution(
        write(tmp_path / "solution.csv", "id,landmarks,Usage\na,1,Public\nb,2 3,Private\nc,,Private\nd,4,Ignored\n")
    )
    assert solution["landmarks"].tolist() == [[1], [2, 3], [], [4]]
    submission = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "landmark_id": [1, 3, 9, 4], "confidence": [0.1, 0.9, 0.95, 1.0]}
    )
    result = score(submission, solution)
    # ranked (d dropped): c wrong, b right, a right -> (1/2 + 2/3) / 2
    assert result["gap"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["public"] == 1.0
    assert result["private"] == pytest.approx(0.5)  # c wrong then b right, M = 1


def test_written_submission_round_trips(tmp_path):
    path = tmp_path / "out" / "submission.csv"
    write_validated_submission(path, ["a", "b"], [5, None], [0.75, 0.0], ["a", "b"])
    assert path.read_text() == "id,landmarks\na,5 0.750000\nb,\n"
    with pytest.raises(UserError, match="test ids missing"):
        write_validated_submission(tmp_path / "bad.csv", ["a"], [5], [0.5], ["a", "b"])
    assert not (tmp_path / "bad.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_score_and_validate(tmp_path):
    submission = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.9\nb,5 0.8\nc,\n")
    solution = write(tmp_path / "solution.csv", "id,landmarks\na,1\nb,2\nc,\n")
    command = [sys.executable, "-m", "landmark.cli"]
    result = subprocess.run(
        command + ["score", str(submission), str(solution), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"gap": 0.5}
    plain = subprocess.run(command + ["score", str(submission), str(solution)], capture_output=True, text=True)
    assert plain.stdout.strip() == "gap: 0.500000"
    test_csv = write(tmp_path / "test.csv", "id\na\nb\nc\n")
    valid = subprocess.run(
        command + ["validate-submission", str(submission), "--test", str(test_csv)], capture_output=True, text=True
    )
    assert valid.returncode == 0 and "valid, 3 ids, 2 predictions" in valid.stdout


def test_cli_reports_a_malformed_row_in_one_line(tmp_path):
    submission = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.9 7\n")
    solution = write(tmp_path / "solution.csv", "id,landmarks\na,1\n")
    result = subprocess.run(
        [sys.executable, "-m", "landmark.cli", "score", str(submission), str(solution)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"{submission}:2:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "rows,expected",
    [
        ("id,landmarks\na,1 0.9 7\nb,\n", "sub.csv:2:"),  # a label without its confidence
        ("id,landmarks\na,1 0.9\na,2 0.5\nb,\n", "sub.csv:3:"),  # an id twice
        ("id,landmarks\na,1 0.9\n", "b"),  # a test id with no row
    ],
    ids=["malformed-row", "id-twice", "id-missing"],
)
def test_cli_validate_submission_names_what_is_wrong_in_one_line(tmp_path, rows, expected):
    """README: `landmark validate-submission` names the line of a malformed submission, through the command."""
    submission = write(tmp_path / "sub.csv", rows)
    test_csv = write(tmp_path / "test.csv", "id\na\nb\n")
    result = subprocess.run([sys.executable, "-m", "landmark.cli", "validate-submission", str(submission), "--test",
                             str(test_csv)], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_check_passes_the_project_params_and_names_a_wrong_key(tmp_path):
    command = [sys.executable, "-m", "landmark.cli", "check"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    assert result.returncode == 0, result.stderr
    methods = len(yaml.safe_load((ROOT / "params.yaml").read_text())["recognize"]["methods"])
    assert result.stdout.startswith(
        f"params.yaml: every setting, {methods} recognition methods and {len(variants)} variants are valid"
    )
    light = subprocess.run(command + ["--no-models"], capture_output=True, text=True, cwd=ROOT)
    assert light.stdout.startswith(f"params.yaml: every setting, {methods} recognition methods are valid")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value, message in [
        (("train", "precision"), "fp16", "params.yaml train.precision: 'fp16' is not auto, bf16 or fp32"),
        (("variants", "xception", "lr"), 0, "params.yaml variants.xception.lr: 0 must be a positive number"),
        (("variant_defaults", "steps"), 0.5, "params.yaml variants.resnet50.steps: 0.5 must be a whole number >= 1"),
        (("submission", "variant"), "vgg", "params.yaml submission.variant: 'vgg' is not in embed.variants; use best"),
        (("submission", "method"), "knn+ban", "params.yaml submission.method: 'knn+ban' is not in recognize.methods"),
        (("embed", "variants"), ["resnet50", "vgg"], "params.yaml embed.variants: 'vgg' is not in variants"),
        (("recognize", "methods"), ["knn", "knn+pool"], "params.yaml recognize.methods: 'pool' in 'knn+pool' is not"),
        (("split", "holdout_fraction"), 1.0, "params.yaml split.holdout_fraction: 1.0 holds out every photo of the"),
        (("recognize", "steps"), {"ban": {}}, "params.yaml recognize.steps.ban: no such step; choose from"),
        (("train", "decode"), "gpu", "params.yaml train.decode: 'gpu' is not worker or device"),
        (("runtime", "num_workers"), -2, "params.yaml runtime.num_workers: -2 is not auto or a whole number >= 0"),
        (("evaluate", "batch_size"), 64, "params.yaml evaluate.batch_size: unknown setting; expected one of"),
    ]:
        changed = copy.deepcopy(params)
        *path, last = key
        functools.reduce(dict.get, path, changed)[last] = value
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        result = subprocess.run(command + ["--params", str(tmp_path / "params.yaml")], capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"error: {message}")


def test_console_script_is_installed(tmp_path):
    landmark = shutil.which("landmark")
    assert landmark, "the `landmark` console script is missing: pip install -e ."
    submission = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.9\n")
    solution = write(tmp_path / "solution.csv", "id,landmarks,Usage\na,1,Private\n")
    result = subprocess.run(
        [landmark, "score", str(submission), str(solution), "--json"], capture_output=True, text=True
    )
    assert json.loads(result.stdout) == {"gap": 1.0, "private": 1.0}


def test_the_submission_chooses_by_validation_gap_never_by_the_test_set(tmp_path):
    figures = {
        "resnet50": {"softmax": (0.30, 0.01), "knn": (0.50, 0.02)},
        "recipe": {"softmax": (0.20, 0.90), "knn": (0.60, 0.10)},  # the test GAP would pick recipe/softmax
    }
    for variant, methods in figures.items():
        scores = {method: {"validation_gap": valid, "test_gap": test} for method, (valid, test) in methods.items()}
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "metrics.json").write_text(json.dumps({"methods": scores}))
    variants, methods = ["resnet50", "recipe"], ["softmax", "knn"]
    assert choose(tmp_path, variants, methods, "best", "best") == ("recipe", "knn", 0.60)
    assert choose(tmp_path, variants, methods, "resnet50", "best") == ("resnet50", "knn", 0.50)
    assert choose(tmp_path, variants, methods, "best", "softmax") == ("resnet50", "softmax", 0.30)
    with pytest.raises(UserError, match=r"missing/metrics.json: no such file; run the recognize stages first"):
        choose(tmp_path, ["missing"], methods, "best", "best")


def test_the_submission_stage_writes_every_test_id_and_leaves_the_unembedded_empty(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["embed"]["variants"], params["recognize"]["methods"] = ["resnet50"], ["knn"]
    params["embed"]["ensembles"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    recognized = tmp_path / "recognitions/resnet50"
    recognized.mkdir(parents=True)
    (recognized / "metrics.json").write_text(json.dumps({"methods": {"knn": {"validation_gap": 0.5}}}))
    rows = [("validation", "knn", "d1", 5, 0.9), ("test", "knn", "t1", 5, 0.8), ("test", "knn", "t2", -1, "-inf")]
    pd.DataFrame(rows, columns=["query_set", "method", "id", "landmark_id", "confidence"]).to_csv(
        recognized / "predictions.csv", index=False
    )
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards/test.csv").write_text("id\nt1\nt2\nt3\n")  # t3 had no usable image
    (tmp_path / "shards/solution.csv").write_text("id,landmarks,Usage\nt1,5,Public\nt2,,Public\nt3,7,Private\n")
    result = subprocess.run(
        [sys.executable, "-m", "stages.submission", "recognitions", "shards", "submission.csv", "score.json"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "resnet50 by knn (validation GAP 0.500) predicted 1 of 3 test images, 1 without a usable image" in result.stdout
    )
    assert (tmp_path / "submission.csv").read_text().splitlines() == ["id,landmarks", "t1,5 0.800000", "t2,", "t3,"]
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["gap"] == pytest.approx(0.5) and (score["variant"], score["method"]) == ("resnet50", "knn")
