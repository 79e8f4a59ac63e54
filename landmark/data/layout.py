"""The Kaggle Landmark Recognition layout: `train.csv` (id,landmark_id), `train/a/b/c/<id>.jpg`, `test.csv`,
`test/a/b/c/<id>.jpg` (the first three characters of the 16-hex id as folders), `sample_submission.csv`."""

import csv
import itertools
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from landmark.errors import UserError


def image_path(root, split: str, image_id: str) -> Path:
    return Path(image_file(os.fspath(Path(root)), split, image_id))


def image_file(root: str, split: str, image_id: str) -> str:
    """image_path as a string: what a loop over a folder of 100,000 photos builds, where a Path costs 10 µs more
    an image (six joins, 30 µs)."""
    return f"{root}/{split}/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


def csv_lines(path):
    """(line number, whitespace-stripped fields) of each non-blank row of a CSV, the header first.

    The slow, exact reading, for naming the line of a problem that a fast reader found.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if any(field.strip() for field in row):
                yield reader.line_num, [field.strip() for field in row]


def line_of_row(path, row: int) -> int:
    """The file line of data row `row` (0-based, blank lines not counted), as read_csv numbers its rows."""
    return next(itertools.islice(csv_lines(path), row + 1, None))[0]


def read_csv(path, required_columns) -> pd.DataFrame:
    """Read a CSV as strings with pyarrow's multi-threaded parser (the real train.csv has 4.1M rows), checking
    that it exists and has the columns it needs. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; run the download stage or check data.local.path")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    frame.columns = [column.strip() for column in frame.columns]
    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        raise UserError(
            f"{path}:1: missing column(s) {', '.join(missing)}; the header must include {','.join(required_columns)}"
        )
    return frame


def read_labels(path) -> pd.DataFrame:
    """train.csv (or a prepared split) as columns id (str) and landmark_id (int64)."""
    frame = read_csv(path, ["id", "landmark_id"])
    labels = frame["landmark_id"].str.strip()
    bad = ~labels.str.fullmatch(r"[+-]?\d{1,18}")
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise UserError(
            f"{path}:{line_of_row(path, row)}: landmark_id {labels.iloc[row]!r} is not an integer; "
            "fix or remove the row"
        )
    return pd.DataFrame({"id": frame["id"].str.strip(), "landmark_id": labels.astype("int64")})
