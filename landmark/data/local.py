"""An existing folder in the Kaggle layout, linked (or copied across file systems) into the pipeline, and a
folder of non-landmark photos added to the pool."""

import hashlib
import os
import shutil
from pathlib import Path

import pandas as pd

from landmark.data.layout import image_path
from landmark.errors import UserError
from landmark.files import write_csv

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def link_tree(source, dest) -> dict:
    """Hard-link source's train.csv, test.csv, sample_submission.csv, solution.csv, train/, test/ and, when it has
    one, its non-landmark pool (nonlandmark.csv, nonlandmark/) into dest."""
    source, dest = Path(source).expanduser(), Path(dest)
    for required in ("train.csv", "train", "test.csv", "test"):
        if not (source / required).exists():
            raise UserError(
                f"data.local.path: {source / required} is missing; point it at a folder in the Kaggle layout"
            )
    files = 0
    names = ("train.csv", "test.csv", "sample_submission.csv", "solution.csv", "train", "test")
    for name in names + ("nonlandmark.csv", "nonlandmark"):
        if not (source / name).exists():
            continue
        for path in [source / name] if (source / name).is_file() else (source / name).rglob("*"):
            if path.is_dir():
                continue
            _link(path, dest / path.relative_to(source))
            files += 1
    return {"files": files}


def _link(path, target) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)


def add_nonlandmarks(folder, dest) -> int:
    """Add the photos under folder (searched recursively, by file suffix) to dest's non-landmark pool, in the
    Kaggle layout: `nonlandmark/a/b/c/<id>.jpg`, the id a hash of the photo's path inside folder, and a row of
    nonlandmark.csv (id, source) for each. Returns how many were added."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"data.nonlandmarks: {folder} is not a folder; point it at a folder of non-landmark photos")
    photos = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    rows = []
    for path in photos:
        relative = path.relative_to(folder).as_posix()
        image_id = hashlib.sha1(relative.encode()).hexdigest()[:16]
        _link(path, image_path(dest, "nonlandmark", image_id))
        rows.append((image_id, relative))
    csv = Path(dest) / "nonlandmark.csv"
    existing = pd.read_csv(csv, dtype=str, keep_default_na=False) if csv.is_file() else pd.DataFrame({"id": []})
    pool = pd.concat([existing, pd.DataFrame(rows, columns=["id", "source"])], ignore_index=True)
    write_csv(csv, pool.drop_duplicates("id", keep="last"))  # a resumed download adds the same photos again
    return len(rows)
