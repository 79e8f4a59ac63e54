"""Images packed into tar shards, WebDataset-style (`<id>.jpg` beside `<id>.cls`, shuffled across shards), with
an index of where each JPEG's bytes sit.

A million loose JPEGs make `dvc status` hash a million files and training open a million small files; a few
hundred ~1 GB shards do neither. The index keeps random access: a reader takes any image with one pread, so the
resumable, seeded sampling of training works unchanged, and the shards still stream as plain WebDataset tars.
"""

import copy
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from landmark.data.layout import image_path, read_csv
from landmark.errors import UserError
from landmark.files import write_csv

INDEX = "index.csv"


def _tar_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed metadata: the same images give the same shards
    return info, io.BytesIO(data)


def pack(images_root, split: str, frame: pd.DataFrame, out_dir, shard_bytes: int, seed: int) -> pd.DataFrame:
    """Pack the images of frame (column id, optionally landmark_id) from images_root (the Kaggle layout, or its
    splits in shards) into out_dir/split/, shuffled by seed. Returns its index (write_shards)."""
    order = np.random.default_rng(seed).permutation(len(frame))
    reader = image_reader(images_root, split, frame["id"])
    return write_shards(reader, frame, Path(out_dir) / split, shard_bytes, order)


def write_shards(reader, frame: pd.DataFrame, final: Path, shard_bytes: int, order) -> pd.DataFrame:
    """The images of reader (one per row of frame: id, optionally landmark_id), in `order`, as shards of about
    shard_bytes in the folder final.

    Returns and writes final/index.csv: id, shard, offset, size (bytes of the JPEG inside its shard), digest (of
    those bytes: BLAKE2b, 128 bits, what a cached embedding of the image is found by).
    The folder appears whole or not at all: it is written beside its final place and renamed.
    """
    partial = final.with_name(f"{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    index = write_tars(reader, frame, order, partial, shard_bytes)
    write_csv(partial / INDEX, index)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return index


def write_tars(reader, frame: pd.DataFrame, order, folder: Path, shard_bytes: int, first_shard: int = 0):
    """The images of reader in `order` as new shards in folder, numbered from first_shard; returns their index rows
    (write_shards), the shards complete on disk but in no index.csv yet."""
    labels = frame["landmark_id"].to_numpy() if "landmark_id" in frame else None
    rows, tar, shard, written = [], None, first_shard - 1, 0
    try:
        desc = f"pack {folder.name.removesuffix('.partial')}"
        for position in tqdm(order, desc=desc, unit="image", mininterval=2):
            image_id = str(frame["id"].iat[position])
            data = reader.read(position)
            if tar is None or written >= shard_bytes:
                if tar is not None:
                    tar.close()
                shard += 1
                tar = tarfile.open(folder / f"shard-{shard:06d}.tar", "w", format=tarfile.USTAR_FORMAT)
                written = 0
            tar.addfile(*_tar_member(f"{image_id}.jpg", data))
            if labels is not None:
                tar.addfile(*_tar_member(f"{image_id}.cls", str(labels[position]).encode()))
            rows.append((image_id, shard, len(data), hashlib.blake2b(data, digest_size=16).hexdigest()))
            written += len(data)
    except FileNotFoundError as error:
        raise UserError(f"{error.filename}: missing; rerun the download and filter stages (dvc repro)") from None
    finally:
        if tar is not None:
            tar.close()
    offsets = {}
    for number in range(first_shard, shard + 1):  # where tarfile put each JPEG's bytes, read back from the headers
        with tarfile.open(folder / f"shard-{number:06d}.tar") as reading:
            offsets.update({member.name[:-4]: member.offset_data for member in reading if member.name.endswith(".jpg")})
    index = pd.DataFrame(rows, columns=["id", "shard", "size", "digest"])
    index.insert(2, "offset", index["id"].map(offsets).astype(np.int64))
    return index


class ShardReader:
    """The bytes of the packed images of ids, by position, with one pread on its shard; from one packed folder or
    several (the pack stage's train images and the gallery photos), each id found in the first that has it.

    Locations are numpy arrays, not per-image Python objects: loader workers fork with the dataset, and touching
    millions of small objects would copy them into every worker. An id no index has is an error, or with
    missing_ok a FileNotFoundError when it is read, as a missing file is for FolderReader.
    """

    def __init__(self, folders, ids, missing_ok: bool = False):
        self.folders = image_roots(folders)
        columns = ["id", "shard", "offset", "size"]
        indexes = [read_csv(folder / INDEX, columns)[columns] for folder in self.folders]
        index = pd.concat(indexes, ignore_index=True).assign(
            folder=np.repeat(np.arange(len(indexes)), [len(part) for part in indexes])
        )
        index = index[~index["id"].duplicated()]
        rows = pd.Index(index["id"]).get_indexer(pd.Index(ids, dtype=str))
        if (rows < 0).any() and not missing_ok:
            missing = np.asarray(ids)[rows < 0]
            named = " or ".join(str(folder / INDEX) for folder in self.folders)
            raise UserError(
                f"{named}: {len(missing)} image(s) not in it, e.g. {missing[0]}; rerun the stage that wrote it "
                "(dvc repro)"
            )
        self.folder, self.shard, self.offset, self.size = (
            np.where(rows >= 0, index[column].to_numpy(dtype=np.int64)[rows], -1)
            for column in ("folder", "shard", "offset", "size")
        )
        self._handles, self._pid = {}, None

    def __len__(self):
        return len(self.shard)

    def read(self, position: int) -> bytes:
        if self._pid != os.getpid():  # a forked loader worker opens its own handles
            self._handles, self._pid = {}, os.getpid()
        where = int(self.folder[position]), int(self.shard[position])
        if where[1] < 0:
            raise FileNotFoundError(position)
        if where not in self._handles:
            self._handles[where] = os.open(self.folders[where[0]] / f"shard-{where[1]:06d}.tar", os.O_RDONLY)
        return os.pread(self._handles[where], int(self.size[position]), int(self.offset[position]))

    def take(self, positions) -> "ShardReader":
        """A reader of these positions only: what a worker process is sent, instead of every image's place."""
        part = copy.copy(self)
        part.folder, part.shard = self.folder[positions], self.shard[positions]
        part.offset, part.size = self.offset[positions], self.size[positions]
        part._handles, part._pid = {}, None
        return part

    def __getstate__(self):  # file handles do not travel to spawned workers
        return self.__dict__ | {"_handles": {}, "_pid": None}


class FolderReader:
    """The bytes of the loose images of ids in the Kaggle layout (`root/split/a/b/c/<id>.jpg`), by position."""

    def __init__(self, root, split: str, ids):
        self.root, self.split, self.ids = Path(root), split, np.asarray(ids, dtype=str)

    def __len__(self):
        return len(self.ids)

    def read(self, position: int) -> bytes:
        return image_path(self.root, self.split, str(self.ids[position])).read_bytes()

    def take(self, positions) -> "FolderReader":
        return FolderReader(self.root, self.split, self.ids[positions])


class FileReader:
    """The bytes of image files by position (any name, any format): a user's own photos."""

    def __init__(self, paths):
        self.paths = [str(path) for path in paths]

    def __len__(self):
        return len(self.paths)

    def read(self, position: int) -> bytes:
        return Path(self.paths[position]).read_bytes()

    def take(self, positions) -> "FileReader":
        return FileReader([self.paths[position] for position in positions])


def image_roots(images_root) -> list:
    """images_root as a list: one folder (a path), or several searched in turn (the pack stage's output and the
    gallery photos stage's)."""
    return [Path(images_root)] if isinstance(images_root, (str, os.PathLike)) else [Path(r) for r in images_root]


def packed_ids(images_root, split: str):
    """The ids the pack stage packed for split, or None when images_root is not its output."""
    index = Path(images_root) / split / INDEX
    return read_csv(index, ["id"])["id"].to_numpy() if index.is_file() else None


def packed_folders(images_root, split: str) -> list:
    """The folders of images_root (one, or several searched in turn) that hold split packed: <root>/<split>."""
    return [root / split for root in image_roots(images_root) if (root / split / INDEX).is_file()]


class PackedDigests:
    """The content digest of each packed image, as the index of the first of images_root's folders that packed it
    records it: each split's indexes read once (the train split's 4.1M rows hold the gallery and the dev set)."""

    def __init__(self, images_root):
        self.images_root = images_root
        self.by_split = {}  # split -> its digests, by id

    def __call__(self, split: str, ids) -> np.ndarray:
        if split not in self.by_split:
            indexes = [read_csv(folder / INDEX, ["id", "digest"])[["id", "digest"]]
                       for folder in packed_folders(self.images_root, split)]  # fmt: skip
            self.by_split[split] = pd.concat(indexes, ignore_index=True).drop_duplicates("id").set_index("id")["digest"]
        try:
            return self.by_split[split].loc[pd.Index(ids, dtype=str)].to_numpy(dtype=str)
        except KeyError:
            named = " or ".join(str(folder / INDEX) for folder in packed_folders(self.images_root, split))
            raise UserError(f"{named}: an image is not in it; rerun pack (dvc repro)") from None


def image_reader(images_root, split: str, ids, missing_ok: bool = False):
    """The images of ids: from shards where images_root (a folder, or several searched in turn) holds the split
    packed (the pack stage's output, the gallery photos stage's, or the download stage's GLDv2 shards), else from
    the Kaggle layout's files of its first folder."""
    packed = packed_folders(images_root, split)
    if packed:
        return ShardReader(packed, ids, missing_ok)
    return FolderReader(image_roots(images_root)[0], split, ids)
