"""An existing folder in the Kaggle layout, linked (or copied across file systems) into the pipeline, and a
folder of non-landmark photos added to the pool."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.layout import image_path
from landmark.data.shards import INDEX, FileReader, write_shards
from landmark.errors import UserError
from landmark.files import link_or_copy, write_csv

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
            link_or_copy(path, dest / path.relative_to(source))
            files += 1
    return {"files": files}


def add_nonlandmarks(folders, dest, shard_bytes: int) -> int:
    """Add the photos under each of folders (searched recursively, by file suffix) to dest's non-landmark pool:
    a row of nonlandmark.csv (id, source) each, the id a hash of the photo's path inside its folder (after the
    first folder, prefixed by the folder's place in the list). Returns how many.

    Where dest has no pool of its own (kaggle, rehearsal), they are packed into shards of about shard_bytes
    (`nonlandmark/shard-*.tar` and `index.csv`, as landmark.data.shards writes them): GLDv2's 761,757 index
    photos, loose, would be as many files for DVC to hash. Beside a pool of loose files (the synthetic set's, a
    local folder's) they are linked in the Kaggle layout, `nonlandmark/a/b/c/<id>.jpg`.
    """
    dest, frames = Path(dest), []
    for place, folder in enumerate(Path(folder).expanduser() for folder in folders):
        if not folder.is_dir():
            raise UserError(f"data.nonlandmarks: {folder} is not a folder; point it at a folder of non-landmark photos")
        photos = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        names = [f"{place}/" * (place > 0) + path.relative_to(folder).as_posix() for path in photos]
        ids = [hashlib.sha1(name.encode()).hexdigest()[:16] for name in names]
        frames.append(pd.DataFrame({"id": ids, "source": names, "path": photos}))
    added = pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last")
    csv = dest / "nonlandmark.csv"
    if (dest / "nonlandmark" / INDEX).is_file():  # packed by this download before it was interrupted: again
        shutil.rmtree(dest / "nonlandmark")
        csv.unlink(missing_ok=True)
    if csv.is_file():
        for image_id, path in zip(added["id"], added["path"], strict=True):
            link_or_copy(path, image_path(dest, "nonlandmark", image_id))
        existing = pd.read_csv(csv, dtype=str, keep_default_na=False)
        pool = pd.concat([existing, added[["id", "source"]]], ignore_index=True)
        write_csv(csv, pool.drop_duplicates("id", keep="last"))  # a resumed download adds the same photos again
    else:
        reader = FileReader(added["path"])
        write_shards(reader, added[["id"]], dest / "nonlandmark", shard_bytes, np.arange(len(added)))
        write_csv(csv, added[["id", "source"]])
    return len(added)
