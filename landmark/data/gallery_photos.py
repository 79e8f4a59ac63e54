"""Photos only the gallery needs (data.gallery_photos: a folder in the Kaggle layout, `train.csv` and
`train/a/b/c/<id>.jpg`), packed next to the pack stage's shards so that retrieval searches them, no model trains on
them, and a landmark no model learned is named by its photos alone.

The packed folder is kept from one run to the next (a persistent DVC output), so a run packs only the photos it has
not packed: a photo is known by its id, its file's size and its modification time, the way DVC and rsync tell a
changed file. New and changed photos go into new shards; rows of removed photos leave the index, and once the
shards hold more bytes of removed photos than of kept ones, they are packed again from scratch.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.images import scan
from landmark.data.layout import image_file, image_path, line_of_row, read_labels
from landmark.data.prepare import drop_duplicate_ids
from landmark.data.shards import INDEX, FileReader, ShardReader, write_shards, write_tars
from landmark.errors import UserError
from landmark.files import write_csv

COLUMNS = ["id", "shard", "offset", "size", "digest", "landmark_id", "file_size", "file_mtime_ns"]


@dataclass
class Packing:
    """What a run did: photos listed, packed now, kept as packed before, removed, skipped (missing or unusable:
    the rows of skipped.csv), and whether the shards were packed again from scratch."""

    listed: int
    packed: int
    kept: int
    removed: int
    skipped: int
    repacked: bool


def listed_photos(folder) -> pd.DataFrame:
    """folder/train.csv (id, landmark_id), each id once, every landmark_id a landmark (0 or more)."""
    folder = Path(folder).expanduser()
    csv = folder / "train.csv"
    if not csv.is_file():
        raise UserError(
            f"data.gallery_photos: {csv} is missing; the folder needs a train.csv (id,landmark_id) and its photos "
            "at train/a/b/c/<id>.jpg (the Kaggle layout)"
        )
    listed, _ = drop_duplicate_ids(read_labels(csv), csv)
    negative = (listed["landmark_id"] < 0).to_numpy()
    if negative.any():
        row = int(negative.argmax())
        raise UserError(f"{csv}:{line_of_row(csv, row)}: landmark_id must be 0 or more; a gallery photo shows one")
    return listed.sort_values("id", kind="stable").reset_index(drop=True)


def file_stats(folder, ids) -> pd.DataFrame:
    """id, file_size, file_mtime_ns of each photo of ids in folder's Kaggle layout; -1 where it is missing."""
    stats = np.full((len(ids), 2), -1, dtype=np.int64)
    folder = os.fspath(folder)
    for row, image_id in enumerate(ids):
        try:
            stat = os.stat(image_file(folder, "train", image_id))
        except FileNotFoundError:
            continue
        stats[row] = stat.st_size, stat.st_mtime_ns
    return pd.DataFrame({"id": pd.Series(list(ids), dtype=str), "file_size": stats[:, 0], "file_mtime_ns": stats[:, 1]})


def packed_index(packed_dir) -> pd.DataFrame:
    """The index of the photos packed by the last run; none (all are packed again) where there is none, or where a
    run killed while it packed from scratch left the pack stage's columns only."""
    path = Path(packed_dir) / INDEX
    index = pd.read_csv(path, dtype={"id": str, "digest": str}) if path.is_file() else pd.DataFrame()
    if not set(COLUMNS) <= set(index.columns):
        return pd.DataFrame({column: pd.Series(dtype=str if column in ("id", "digest") else np.int64)
                             for column in COLUMNS})  # fmt: skip
    return index[COLUMNS]


def update_gallery_photos(folder, out_dir, shard_bytes: int, max_pixels: int) -> Packing:
    """Bring out_dir/train/ (shards and index.csv: COLUMNS) and out_dir/skipped.csv (id, reason) up to date with
    folder's photos, packing only those that are new or changed since the last run."""
    folder, packed_dir = Path(folder).expanduser(), Path(out_dir) / "train"
    listed = listed_photos(folder)
    listed = listed.merge(file_stats(folder, listed["id"]), on="id")
    before = packed_index(packed_dir)
    unchanged = listed.merge(before.drop(columns="landmark_id"), on=["id", "file_size", "file_mtime_ns"])
    fresh = listed[~listed["id"].isin(unchanged["id"]) & (listed["file_size"] >= 0)].reset_index(drop=True)
    paths = [image_path(folder, "train", image_id) for image_id in fresh["id"]]
    reasons = scan(fresh["id"], FileReader(paths), max_pixels) if len(fresh) else pd.DataFrame({"reason": []})
    usable = reasons["reason"].isna().to_numpy()
    skipped = pd.concat(
        [
            pd.DataFrame({"id": listed.loc[listed["file_size"] < 0, "id"], "reason": "missing"}),
            pd.DataFrame({"id": fresh.loc[~usable, "id"], "reason": reasons.loc[~usable, "reason"]}),
        ]
    )
    fresh = fresh[usable].reset_index(drop=True)
    paths = [path for path, kept in zip(paths, usable, strict=True) if kept]
    packed_dir.mkdir(parents=True, exist_ok=True)
    first_shard = int(before["shard"].max()) + 1 if len(before) else 0
    index = unchanged[COLUMNS]
    if len(fresh):
        added = write_tars(
            FileReader(paths), fresh[["id"]], np.arange(len(fresh)), packed_dir, shard_bytes, first_shard
        )
        index = pd.concat([index, added.merge(fresh, on="id")[COLUMNS]], ignore_index=True)
    index = index.sort_values("id", kind="stable").reset_index(drop=True)
    removed = int((~before["id"].isin(index["id"])).sum())
    write_csv(packed_dir / INDEX, index)
    repacked = _shard_bytes(packed_dir, index) > 2 * index["size"].sum() + shard_bytes
    if repacked:
        again = write_shards(ShardReader(packed_dir, index["id"]), index[["id"]], packed_dir, shard_bytes,
                             np.arange(len(index)))  # fmt: skip
        index = again.merge(index.drop(columns=["shard", "offset", "size", "digest"]), on="id")[COLUMNS]
        write_csv(packed_dir / INDEX, index)
    used = set(index["shard"])
    for shard in packed_dir.glob("shard-*.tar"):  # of removed photos only, or left by a killed run
        if int(shard.stem.removeprefix("shard-")) not in used:
            shard.unlink()
    write_csv(Path(out_dir) / "skipped.csv", skipped.sort_values("id"))
    return Packing(len(listed), len(fresh), len(unchanged), removed, len(skipped), bool(repacked))


def _shard_bytes(packed_dir, index) -> int:
    """Bytes in the shards the index still uses."""
    return sum((Path(packed_dir) / f"shard-{shard:06d}.tar").stat().st_size for shard in set(index["shard"]))
