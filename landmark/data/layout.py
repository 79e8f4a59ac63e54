"""The Kaggle Landmark Recognition layout: `train.csv` (id,landmark_id), `train/a/b/c/<id>.jpg`, `test.csv`,
`test/a/b/c/<id>.jpg` (the first three characters of the 16-hex id as folders), `sample_submission.csv`."""
from pathlib import Path

import pandas as pd

from landmark.errors import UserError


def image_path(root, split: str, image_id: str) -> Path:
    return Path(root) / split / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


def read_csv(path, required_columns) -> pd.DataFrame:
    """Read a CSV as strings, checking that it exists and has the columns it needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; run the download stage or check data.local_dir")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})")
    frame.columns = [column.strip() for column in frame.columns]
    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        raise UserError(f"{path}:1: missing column(s) {', '.join(missing)}; the header must include {','.join(required_columns)}")
    return frame


def read_labels(path) -> pd.DataFrame:
    """train.csv (or a prepared split) as columns id (str) and landmark_id (int64)."""
    frame = read_csv(path, ["id", "landmark_id"])[["id", "landmark_id"]]
    labels = pd.to_numeric(frame["landmark_id"], errors="coerce")
    bad = labels.isna() | (labels != labels.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise UserError(
            f"{path}:{row + 2}: landmark_id {frame['landmark_id'].iloc[row]!r} is not an integer; fix or remove the row"
        )
    return frame.assign(landmark_id=labels.astype("int64"))
