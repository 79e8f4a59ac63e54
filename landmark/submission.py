"""Kaggle CSV files: read and validate submissions, read solutions, write submissions, score them.

Submission format (Landmark Recognition 2019–2021): header `id,landmarks`; `landmarks` is
`<landmark_id> <confidence>` or empty for no prediction.
Solution format: `id,landmarks,Usage`; `landmarks` holds space-separated ids, empty for a non-landmark image;
Usage is Public, Private or Ignored.
"""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from landmark.data.layout import csv_lines
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.metrics import gap_of_queries, rank_predictions


def _check_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return path


def _rows(path, expected_header):
    """Yield (line_number, stripped fields) of each data row, checking the header; blank lines are skipped."""
    lines = csv_lines(path)
    header = next(lines, (1, []))[1]
    if header[: len(expected_header)] != expected_header:
        raise UserError(f"{path}:1: header must start with {','.join(expected_header)}, found {','.join(header)}")
    yield from lines


def _submission_row_problem(row, seen) -> str | None:
    if len(row) != 2:
        return f"expected 2 fields (id,landmarks), found {len(row)}"
    if row[0] in seen:
        return f"duplicate id {row[0]}; each id must appear exactly once"
    seen.add(row[0])
    tokens = row[1].split()
    if len(tokens) not in (0, 2):
        return f"landmarks must be '<landmark_id> <confidence>' or empty, found {row[1]!r}"
    if tokens and not (re.fullmatch(r"[+-]?\d+", tokens[0]) and -(2**63) <= int(tokens[0]) < 2**63):
        return f"landmark_id {tokens[0]!r} is not an integer"
    if tokens and not _is_finite_number(tokens[1]):
        return f"confidence {tokens[1]!r} is not a finite number"
    return None


def _is_finite_number(text) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _raise_first_problem(path, expected_header, problem):
    """Walk the file line by line and raise for the first row that `problem(row, seen)` rejects."""
    seen = set()
    for line, row in _rows(path, expected_header):
        message = problem(row, seen)
        if message:
            raise UserError(f"{path}:{line}: {message}")
    raise UserError(f"{path}: not a valid CSV; check its quoting and encoding")


def _read_strings(path, expected_header):
    """The CSV's first columns as arrow string arrays (whitespace-trimmed) through pyarrow's multi-threaded
    reader, or None when it cannot parse the file (the caller then names the bad line)."""
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in expected_header}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
        return None
    if [name.strip() for name in table.column_names[: len(expected_header)]] != expected_header:
        return None
    return [pc.utf8_trim_whitespace(table.column(index)) for index in range(len(expected_header))]


def read_submission(path) -> pd.DataFrame:
    """A validated submission as columns id, landmark_id, confidence (rows with no prediction dropped)."""
    return parse_submission(path)[0]


def parse_submission(path):
    """read_submission's frame, and the set of every id in the file (with or without a prediction).

    Checks every row: exactly two fields; landmarks empty or `<integer> <finite number>`; no id twice.
    """
    path = _check_file(path)
    columns = _read_strings(path, ["id", "landmarks"])
    if columns is not None:
        ids = columns[0].to_numpy(zero_copy_only=False)
        parts = pc.extract_regex(columns[1], r"^(?P<label>[+-]?\d+)\s+(?P<confidence>\S+)$")
        predicted = pc.is_valid(parts).to_numpy(zero_copy_only=False)
        empty = pc.equal(columns[1], "").to_numpy(zero_copy_only=False)
        labels = pc.struct_field(parts, "label").to_numpy(zero_copy_only=False)[predicted]
        confidences = pd.to_numeric(
            pc.struct_field(parts, "confidence").to_numpy(zero_copy_only=False)[predicted], errors="coerce"
        ).astype(float)
        unique_ids = pd.Index(ids)
        if (predicted | empty).all() and np.isfinite(confidences).all() and unique_ids.is_unique:
            try:
                landmark_ids = labels.astype(np.int64)
            except OverflowError:
                landmark_ids = None
            if landmark_ids is not None:
                frame = pd.DataFrame(
                    {
                        "id": pd.Series(ids[predicted], dtype=object),
                        "landmark_id": landmark_ids,
                        "confidence": confidences,
                    }
                )
                return frame, set(ids)
    _raise_first_problem(path, ["id", "landmarks"], _submission_row_problem)


def _solution_row_problem(row, seen) -> str | None:
    if len(row) < 2:
        return "expected the fields id,landmarks[,Usage]"
    if not re.fullmatch(r"([+-]?\d+(\s+[+-]?\d+)*)?", row[1]):
        return f"landmarks must be space-separated integer ids, found {row[1]!r}"
    return None


def read_solution(path) -> pd.DataFrame:
    """A solution as columns id, landmarks (list of ints) and Usage (Public when the file has none)."""
    path = _check_file(path)
    header = ["id", "landmarks", "Usage"]
    with open(path, encoding="utf-8-sig") as handle:
        has_usage = "Usage" in [name.strip() for name in handle.readline().split(",")]
    columns = _read_strings(path, header if has_usage else header[:2])
    if columns is not None:
        text = columns[1].to_numpy(zero_copy_only=False)
        if pc.all(pc.match_substring_regex(columns[1], r"^([+-]?\d+(\s+[+-]?\d+)*)?$")).as_py() is not False:
            ids = pd.Series(columns[0].to_numpy(zero_copy_only=False), dtype=object)
            truths = [[int(label) for label in value.split()] if value else [] for value in text]
            usage = pd.Series(
                columns[2].to_numpy(zero_copy_only=False) if has_usage else "Public", index=ids.index, dtype=object
            )
            return pd.DataFrame({"id": ids, "landmarks": truths, "Usage": usage})
    _raise_first_problem(path, ["id", "landmarks"], _solution_row_problem)


def validate_submission(path, test_ids) -> pd.DataFrame:
    """read_submission, plus: every test id appears exactly once and no other id does."""
    submission, submitted = parse_submission(path)
    expected = set(test_ids)
    missing, unknown = expected - submitted, submitted - expected
    if missing:
        raise UserError(f"{path}: {len(missing)} test ids missing, e.g. {sorted(missing)[0]}; add a row for each")
    if unknown:
        raise UserError(f"{path}: {len(unknown)} ids not in the test set, e.g. {sorted(unknown)[0]}; remove them")
    return submission


def score(submission: pd.DataFrame, solution: pd.DataFrame, ignore_non_landmarks: bool = False) -> dict:
    """GAP over all scored rows, and per Usage split (Public, Private) when the solution has one; Ignored rows
    are dropped."""
    solution = solution[solution["Usage"] != "Ignored"].reset_index(drop=True)
    query, correct = rank_predictions(submission, solution)
    result = {"gap": gap_of_queries(query, correct, solution, ignore_non_landmarks=ignore_non_landmarks)}
    usages = sorted(set(solution["Usage"]))
    if usages != ["Public"]:
        for usage in usages:
            selected = (solution["Usage"] == usage).to_numpy()
            result[usage.lower()] = gap_of_queries(query, correct, solution, selected, ignore_non_landmarks)
    return result


def write_submission(path, ids, labels, confidences) -> None:
    """Write `id,landmarks` with one `<label> <confidence>` per id (a label of None gives an empty prediction)."""
    landmarks = [
        "" if label is None else f"{int(label)} {float(confidence):.6f}"
        for label, confidence in zip(labels, confidences, strict=True)
    ]
    pd.DataFrame({"id": list(ids), "landmarks": landmarks}).to_csv(path, index=False)


def write_validated_submission(path, ids, labels, confidences, test_ids) -> pd.DataFrame:
    """write_submission into a temporary file, validate it against the test ids, then move it into place.

    Returns the submission as read back (read_submission's frame), ready to score."""
    with atomic_path(path) as temporary:
        write_submission(temporary, ids, labels, confidences)
        return validate_submission(temporary, test_ids)
