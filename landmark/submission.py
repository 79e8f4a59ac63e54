"""Kaggle CSV files: read and validate submissions, read solutions, write submissions, score them.

Submission format (Landmark Recognition 2019–2021): header `id,landmarks`; `landmarks` is
`<landmark_id> <confidence>` or empty for no prediction.
Solution format: `id,landmarks,Usage`; `landmarks` holds space-separated ids, empty for a non-landmark image;
Usage is Public, Private or Ignored.
"""
import csv
import math
from pathlib import Path

import pandas as pd

from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.metrics import global_average_precision


def _rows(path, expected_header):
    """Yield (line_number, row) from a CSV, checking its header; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [name.strip() for name in header[: len(expected_header)]] != expected_header:
            raise UserError(f"{path}:1: header must start with {','.join(expected_header)}, found {header}")
        for row in reader:
            if row:
                yield reader.line_num, row


def read_submission(path) -> pd.DataFrame:
    """A validated submission as columns id, landmark_id, confidence (rows with no prediction dropped)."""
    seen = set()
    ids, labels, confidences = [], [], []
    for line, row in _rows(path, ["id", "landmarks"]):
        if len(row) != 2:
            raise UserError(f"{path}:{line}: expected 2 fields (id,landmarks), found {len(row)}")
        query, prediction = row[0].strip(), row[1]
        if query in seen:
            raise UserError(f"{path}:{line}: duplicate id {query}; each id must appear exactly once")
        seen.add(query)
        tokens = prediction.split()
        if not tokens:
            continue
        if len(tokens) != 2:
            raise UserError(
                f"{path}:{line}: landmarks must be '<landmark_id> <confidence>' or empty, found {prediction!r}"
            )
        try:
            label = int(tokens[0])
        except ValueError:
            raise UserError(f"{path}:{line}: landmark_id {tokens[0]!r} is not an integer")
        try:
            confidence = float(tokens[1])
        except ValueError:
            raise UserError(f"{path}:{line}: confidence {tokens[1]!r} is not a number")
        if not math.isfinite(confidence):
            raise UserError(f"{path}:{line}: confidence {tokens[1]!r} is not finite")
        ids.append(query)
        labels.append(label)
        confidences.append(confidence)
    submission = pd.DataFrame({"id": ids, "landmark_id": labels, "confidence": confidences})
    submission.attrs["ids"] = seen
    return submission


def read_solution(path) -> pd.DataFrame:
    """A solution as columns id, landmarks (list of ints) and Usage (Public when the file has none)."""
    ids, truths, usages = [], [], []
    for line, row in _rows(path, ["id", "landmarks"]):
        try:
            truths.append([int(token) for token in row[1].split()])
        except (ValueError, IndexError):
            raise UserError(f"{path}:{line}: landmarks must be space-separated integer ids, found {row[1:]}")
        ids.append(row[0].strip())
        usages.append(row[2].strip() if len(row) > 2 else "Public")
    return pd.DataFrame({"id": ids, "landmarks": truths, "Usage": usages})


def validate_submission(path, test_ids) -> pd.DataFrame:
    """read_submission, plus: every test id appears exactly once and no other id does."""
    submission = read_submission(path)
    submitted, expected = submission.attrs["ids"], set(test_ids)
    missing, unknown = expected - submitted, submitted - expected
    if missing:
        raise UserError(f"{path}: {len(missing)} test ids missing, e.g. {sorted(missing)[0]}; add a row for each")
    if unknown:
        raise UserError(f"{path}: {len(unknown)} ids not in the test set, e.g. {sorted(unknown)[0]}; remove them")
    return submission


def score(submission: pd.DataFrame, solution: pd.DataFrame, ignore_non_landmarks: bool = False) -> dict:
    """GAP over all scored rows, and per Usage split (Public, Private) when the solution has one; Ignored rows
    are dropped."""
    solution = solution[solution["Usage"] != "Ignored"]
    result = {"gap": global_average_precision(submission, solution, ignore_non_landmarks)}
    usages = sorted(set(solution["Usage"]))
    if usages != ["Public"]:
        for usage in usages:
            part = solution[solution["Usage"] == usage]
            result[usage.lower()] = global_average_precision(submission, part, ignore_non_landmarks)
    return result


def write_submission(path, ids, labels, confidences) -> None:
    """Write `id,landmarks` with one `<label> <confidence>` per id (a label of None gives an empty prediction)."""
    landmarks = [
        "" if label is None else f"{int(label)} {float(confidence):.6f}" for label, confidence in zip(labels, confidences)
    ]
    pd.DataFrame({"id": list(ids), "landmarks": landmarks}).to_csv(path, index=False)


def write_validated_submission(path, ids, labels, confidences, test_ids) -> None:
    """write_submission into a temporary file, validate it against the test ids, then move it into place."""
    with atomic_path(path) as temporary:
        write_submission(temporary, ids, labels, confidences)
        validate_submission(temporary, test_ids)
