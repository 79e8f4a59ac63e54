"""The real data: competition files through the Kaggle API, and GLDv2 image shards from their public mirror.

`landmark-recognition-2019` (the paper's competition) ships CSVs only; its images are the GLDv2 tar shards
(`train/images_000.tar` … `images_499.tar`, `test/images_000.tar` … `images_019.tar`), each with an md5 file
under `md5sum/`. `landmark-recognition-2020` ships GLDv2-clean with its images in the competition's zip.
Shards are verified by md5 and kept in a cache folder, so an interrupted download resumes where it stopped, and
laid in the data folder as they are, with an index of where each image sits, not unpacked into millions of files;
the 2020 zip's images are packed into shards of the same kind as they are read out of it.
"""

import contextlib
import hashlib
import http.client
import io
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from landmark.data.layout import read_csv
from landmark.data.shards import INDEX, write_shards
from landmark.errors import UserError
from landmark.files import link_or_copy, write_csv

CREDENTIALS_HELP = (
    "set KAGGLE_API_TOKEN, or save your token to ~/.kaggle/access_token (or a legacy ~/.kaggle/kaggle.json); "
    "create one at https://www.kaggle.com/settings/api"
)


def kaggle_api():
    """An authenticated KaggleApi. The `kaggle` package is imported here, not at the top: it authenticates on
    import. Authenticating asks Kaggle whether the token is good, so it fails as a download can."""
    import requests
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.authenticate()
    except SystemExit:  # the client found no credentials, or none that Kaggle knows
        raise UserError(f"no Kaggle credentials found: {CREDENTIALS_HELP}") from None
    except requests.exceptions.RequestException as error:
        raise kaggle_failure(error, "the credentials check") from None
    return api


def kaggle_failure(error, asked: str, competition: str = "") -> UserError:
    """A failed Kaggle API call (asked: what was asked of it) as one line that says what to do."""
    import requests

    if not isinstance(error, requests.exceptions.HTTPError):
        return UserError(f"cannot reach Kaggle ({type(error).__name__}); check the network connection, then rerun")
    status = getattr(error.response, "status_code", None)
    if status == 401:
        return UserError(f"Kaggle rejected the credentials (HTTP 401): {CREDENTIALS_HELP}")
    if status == 403 and competition:
        return UserError(
            f"Kaggle refused {competition} (HTTP 403): accept the rules at "
            f"https://www.kaggle.com/competitions/{competition}/rules, then rerun"
        )
    if status == 404 and competition:
        return UserError(f"Kaggle has no competition {competition!r} (HTTP 404): check data.kaggle.competition")
    return UserError(f"Kaggle failed {asked} (HTTP {status}); rerun later")


def download_competition_files(api, competition: str, cache_dir) -> list:
    """Download a competition's files (one zip) with the Kaggle API into cache_dir; returns the zips.

    The client skips a zip already downloaded and resumes a partial one, so cache_dir is kept between runs.
    """
    import requests

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        api.competition_download_files(competition, path=str(cache_dir), quiet=False)
    except requests.exceptions.RequestException as error:
        raise kaggle_failure(error, f"the download of {competition}", competition) from None
    return sorted(cache_dir.glob(f"{competition}*.zip"))


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def extract_zip(archive, dest, shard_bytes: int) -> None:
    """Unpack a zip, refusing members that would land outside dest; its JPEGs (2020's `train/a/b/c/<id>.jpg`, …)
    are packed instead, each top folder into shards of about shard_bytes in dest/<folder> with its index, read
    straight out of the zip: GLDv2-clean's 1.58M images, loose, would be as many files for DVC to hash."""
    dest = Path(dest).resolve()
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        for member in names:
            if not _inside(dest, member):
                raise UserError(f"{archive}: member {member!r} points outside {dest}; refusing to extract")
        images = zipped_images(names)
        bundle.extractall(dest, members=sorted(set(names) - set(images)))
        for folder, members in images.groupby(images.str.split("/").str[0]):
            ids = members.str.rsplit("/", n=1).str[-1].str[:-4]
            reader = ZipMembers(bundle, members.to_list())
            write_shards(reader, pd.DataFrame({"id": ids}), dest / folder, shard_bytes, np.arange(len(members)))


def zipped_images(names) -> pd.Series:
    """The JPEGs among a zip's member names that sit in a folder (2020's `train/a/b/c/<id>.jpg`)."""
    return pd.Series([name for name in names if name.lower().endswith(".jpg") and "/" in name], dtype=str)


def _one_zip_per_image_folder(archives) -> None:
    """A folder of images packed out of two zips would keep only the second's: refused before anything is."""
    seen = {}
    for archive in archives:
        with zipfile.ZipFile(archive) as bundle:
            folders = zipped_images(bundle.namelist()).str.split("/").str[0].unique()
        for folder in folders:
            if folder in seen:
                raise UserError(f"{archive}: images of {folder}/ are in {seen[folder].name} too; expected one zip each")
            seen[folder] = archive


class ZipMembers:
    """The bytes of a zip's members by position, as landmark.data.shards.write_shards reads images."""

    def __init__(self, bundle: zipfile.ZipFile, names: list):
        self.bundle, self.names = bundle, names

    def read(self, position: int) -> bytes:
        return self.bundle.read(self.names[position])


def extract_tar(archive, dest) -> None:
    """Unpack a tar with the `data` filter: no absolute paths, no paths outside dest, no links out, no devices."""
    try:
        with tarfile.open(archive) as bundle:
            bundle.extractall(dest, filter="data")
    except tarfile.FilterError as error:
        raise UserError(f"{archive}: {error}; refusing to extract") from None
    except tarfile.TarError as error:
        raise UserError(f"{archive}: not a readable tar ({error}); delete it and rerun to download it again") from None


def fetch(url: str, dest, retries: int = 3, timeout: float = 60) -> Path:
    """Download url to dest. A partial `dest.part` left by an interrupted transfer is resumed with an HTTP Range
    request; a broken connection is retried up to `retries` times."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    problem = None
    for _ in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
                if offset and response.status != 206:
                    offset = 0
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with (
                    open(part, "ab" if offset else "wb") as handle,
                    tqdm(
                        total=total, initial=offset, desc=dest.name, unit="B", unit_scale=True, leave=False
                    ) as progress,
                ):
                    while chunk := response.read1(1 << 20):  # what has arrived, so a kill loses little
                        handle.write(chunk)
                        progress.update(len(chunk))
            if total is not None and part.stat().st_size != total:
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as error:
            if error.code == 416:
                part.unlink(missing_ok=True)
                problem = error
                continue
            raise UserError(f"cannot download {url}: HTTP {error.code}; check data.kaggle.shard_base_url") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
            problem = error
    raise UserError(f"cannot download {url} ({problem}); check the network, then rerun to resume")


def md5_of(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified_shard(base_url: str, split: str, index: int, cache_dir) -> Path:
    """One GLDv2 shard (`{base}/{split}/images_NNN.tar`), checked against `{base}/md5sum/{split}/md5.images_NNN.txt`.

    A shard that fails its md5 is downloaded once more; a second failure is an error. Verified shards are marked,
    so a rerun neither downloads nor hashes them again.
    """
    name = f"images_{index:03d}.tar"
    shard = Path(cache_dir) / split / name
    verified = shard.with_name(name + ".verified")
    if verified.exists() and shard.exists():
        return shard
    md5_file = fetch(f"{base_url}/md5sum/{split}/md5.images_{index:03d}.txt", shard.with_name(name + ".md5"))
    expected = md5_file.read_text().split()[0].lower()
    for _ in range(2):
        if not shard.exists():
            fetch(f"{base_url}/{split}/{name}", shard)
        if md5_of(shard) == expected:
            verified.touch()
            return shard
        shard.unlink()
    raise UserError(
        f"{base_url}/{split}/{name}: md5 mismatch twice (expected {expected}); the mirror may be corrupt, rerun later"
    )


def _extract_once(archive: Path, dest, marks: Path, shard_bytes: int) -> None:
    """Unpack a competition zip into dest (extract_zip) unless the mark in `marks` says this very file (name, size,
    time) already was: after an interruption, a rerun unpacks only what it had not finished."""
    mark = marks / "kaggle" / archive.name
    identity = f"{archive.stat().st_size} {archive.stat().st_mtime_ns}\n"
    if mark.exists() and mark.read_text() == identity:
        return
    extract_zip(archive, dest, shard_bytes)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(identity)


def index_tar(path) -> pd.DataFrame:
    """id, offset and size of each JPEG in a tar (GLDv2's members are a/b/c/<id>.jpg), read from its headers
    alone: tarfile seeks from header to header past the images' bytes."""
    rows = []
    try:
        with tarfile.open(path) as bundle:
            for member in bundle:
                if member.isfile() and member.name.endswith(".jpg"):
                    rows.append((member.name.rsplit("/", 1)[-1][:-4], member.offset_data, member.size))
    except tarfile.TarError as error:
        raise UserError(f"{path}: not a readable tar ({error}); delete it and rerun to download it again") from None
    return pd.DataFrame(rows, columns=["id", "offset", "size"])


def fetch_shards(base_url: str, split: str, count: int, cache_dir, dest) -> pd.DataFrame:
    """Download and verify the first `count` shards of a split and lay them in dest as the pack stage lays its
    own (landmark.data.shards): `shard-NNNNNN.tar`, a hard link to the cached shard, and `index.csv`, where each
    image's bytes sit. Nothing is unpacked: at 1× that would be 4.13M files for DVC to hash. Returns the index."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for number in tqdm(range(count), desc=f"{split} shards", unit="shard"):
        shard = fetch_verified_shard(base_url.rstrip("/"), split, number, cache_dir)
        placed = dest / f"shard-{number:06d}.tar"
        placed.unlink(missing_ok=True)
        link_or_copy(shard, placed)
        parts.append(index_tar(placed).assign(shard=number))
    index = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "offset", "size", "shard"])
    index = index[["id", "shard", "offset", "size"]]
    repeated = index["id"].duplicated()
    if repeated.any():
        raise UserError(f"{dest}: image {index['id'][repeated].iat[0]} is in two shards; the mirror is inconsistent")
    write_csv(dest / INDEX, index)
    return index


def _image_ids(folder) -> set:
    """The ids of the images in a split, from the index of its shards."""
    if not (Path(folder) / INDEX).is_file():
        raise UserError(f"{folder}: no images arrived for it; check the competition's files and the shard settings")
    return set(read_csv(Path(folder) / INDEX, ["id"])["id"])


def _claim(dest: Path, settings: dict) -> Path:
    """The folder of unpacking marks in dest, for these settings. dest left by an interrupted download with the
    same settings is kept (its marks say what is already unpacked); anything else there is cleared first."""
    marks = dest / ".unpacked"
    wanted = json.dumps(settings, sort_keys=True)
    claimed = marks / "settings.json"
    if dest.exists() and not (claimed.exists() and claimed.read_text() == wanted):
        shutil.rmtree(dest)
    marks.mkdir(parents=True, exist_ok=True)
    claimed.write_text(wanted)
    return marks


def download(dest, source, cache_dir, shard_bytes: int, api=None) -> dict:
    """Lay out a Kaggle competition's data in dest (the Kaggle layout), from the API and, for 2019, GLDv2 shards.

    source: what params.yaml's data.kaggle gives (competition, shard_base_url, train_shards, test_shards,
    solution_url). train.csv keeps only the rows whose image arrived (a partial set of shards leaves the rest
    out). `api` is an authenticated KaggleApi (by default, made from the user's credentials). Downloads are
    cached in cache_dir; rerun after an interruption with the same arguments, it unpacks only the zips not yet
    unpacked into dest (2020's holds its images, packed into shards of about shard_bytes); GLDv2's shards are
    linked into dest, never unpacked.
    """
    dest, cache_dir = Path(dest), Path(cache_dir)
    api = api or kaggle_api()
    competition = source.competition
    settings = source.model_dump() | {"cache_dir": str(cache_dir.resolve()), "shard_bytes": shard_bytes}
    marks = _claim(dest, settings)
    archives = download_competition_files(api, competition, cache_dir / competition)
    _one_zip_per_image_folder(archives)
    for archive in archives:
        _extract_once(archive, dest, marks, shard_bytes)
    if competition == "landmark-recognition-2019":
        fetch_shards(source.shard_base_url, "train", source.train_shards, cache_dir / "gldv2", dest / "train")
        fetch_shards(source.shard_base_url, "test", source.test_shards, cache_dir / "gldv2", dest / "test")
        solution_url = source.solution_url
        if solution_url:
            fetch(solution_url, cache_dir / "gldv2" / "solution.csv")
            (dest / "solution.csv").unlink(missing_ok=True)
            link_or_copy(cache_dir / "gldv2" / "solution.csv", dest / "solution.csv")
    # From here on dest's CSVs change, so an interruption must not leave the marks to say the archives are unpacked.
    shutil.rmtree(marks)
    train = read_csv(dest / "train.csv", ["id", "landmark_id"])
    present = train["id"].isin(_image_ids(dest / "train"))
    write_csv(dest / "train.csv", train.loc[present, ["id", "landmark_id"]])
    if not (dest / "test.csv").exists():  # 2020 ships its test ids only in sample_submission.csv
        write_csv(dest / "test.csv", read_csv(dest / "sample_submission.csv", ["id"])[["id"]])
    test = read_csv(dest / "test.csv", ["id"])
    return {"train_rows": int(len(train)), "train_images": int(present.sum()), "test_images": int(len(test))}
