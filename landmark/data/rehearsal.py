"""A rehearsal of Google Landmarks v2 at a fraction of its size, arriving the way GLDv2 does.

The class sizes follow GLDv2's: a rank-size curve fitted through its published counts (`data.rehearsal.gldv2`:
classes, images, the largest and smallest class, and the paper's filter, 6,512 classes of ≥ 100 images holding
1.2M). A rehearsal at fraction f has round(f · 203,094) classes; the k-th stands for the k-th slice of GLDv2's
classes ranked by size and holds their mean size, so the filter keeps the same share of classes, to within one
class, and the images add up to f · 4.13M. The test set is f · 117,577 photos with GLDv2's share of landmarks,
the non-landmark pool f · its size at 1×. Photos are drawn as the embedded synthetic set draws them.

They arrive as the real ones do: a mirror folder of tar shards (`train/images_000.tar`, …, at GLDv2's images per
shard) with md5 files (`md5sum/train/md5.images_000.txt`), the competition's CSVs zipped as the Kaggle API gives
them and the solution file, served over HTTP on this machine (with byte ranges, so a cut transfer resumes) while
the kaggle source's own download, verify, resume and extract code fetches it. The pool is a folder of photos,
added as a user's is (`data.nonlandmarks`). The mirror is built once per setting and kept in the cache folder.
"""

import contextlib
import hashlib
import http.server
import io
import itertools
import json
import math
import multiprocessing
import os
import shutil
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from landmark.data import kaggle
from landmark.data.synthetic import make_blueprint, render
from landmark.files import write_csv, write_json
from landmark.settings import Kaggle


def size_curve(first_rank: int, last_rank: int, first_size: float, last_size: float, total: float) -> np.ndarray:
    """Sizes of the classes ranked first_rank … last_rank: C · (rank + shift)^-a through both end sizes, the
    shift chosen so they add up to total (a larger shift flattens the curve, so the sum grows with it)."""
    ranks = np.arange(first_rank, last_rank + 1, dtype=float)

    def through_ends(shift):
        exponent = math.log(first_size / last_size) / math.log((last_rank + shift) / (first_rank + shift))
        return first_size * ((ranks + shift) / (first_rank + shift)) ** -exponent

    low, high = math.log(1e-9), math.log(last_rank * 1e4)  # bounds of log(first_rank + shift)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if through_ends(math.exp(middle) - first_rank).sum() < total else (low, middle)
    return through_ends(math.exp((low + high) / 2) - first_rank)


def gldv2_sizes(gldv2) -> np.ndarray:
    """Every GLDv2 class's size, largest first, as the fitted curve gives it (floats)."""
    head = size_curve(1, gldv2.filter_classes, gldv2.largest_class, gldv2.filter_threshold, gldv2.filter_images)
    tail = size_curve(
        gldv2.filter_classes + 1,
        gldv2.classes,
        gldv2.filter_threshold - 0.5,  # the first class below the threshold rounds to just under it
        gldv2.smallest_class,
        gldv2.images - gldv2.filter_images,
    )
    return np.concatenate([head, tail])


def class_sizes(settings) -> np.ndarray:
    """The rehearsal's class sizes, largest first: class k holds the mean size of the k-th of as many equal slices
    of GLDv2's classes ranked by size."""
    full = gldv2_sizes(settings.gldv2)
    count = max(1, settings.scaled(len(full)))
    edges = np.round(np.linspace(0, len(full), count + 1)).astype(int)
    running = np.concatenate([[0.0], np.cumsum(full)])
    means = (running[edges[1:]] - running[edges[:-1]]) / np.diff(edges)
    return np.maximum(np.round(means), 1).astype(int)


def new_ids(rng, count: int, taken: set) -> list:
    """count 16-hex-digit ids (GLDv2's form), none of them in taken (which gains them)."""
    ids = []
    while len(ids) < count:
        for value in rng.integers(0, 2**63, size=count - len(ids)).tolist():
            image_id = f"{value:016x}"
            if image_id not in taken:
                taken.add(image_id)
                ids.append(image_id)
    return ids


def plan(settings) -> dict:
    """Every photo of the rehearsal, drawn from its seed: frames of (id, class) for train, test and the pool (class
    -1: no landmark), with each test photo's Usage."""
    rng = np.random.default_rng(settings.seed)
    gldv2 = settings.gldv2
    sizes = class_sizes(settings)
    landmark_ids = np.sort(rng.choice(gldv2.classes, size=len(sizes), replace=False))
    taken = set()
    train_classes = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    train = pd.DataFrame({"id": new_ids(rng, len(train_classes), taken), "label": train_classes})
    test_count = max(1, settings.scaled(gldv2.test_images))
    landmarks = max(1, int(round(test_count * gldv2.test_landmark_fraction)))  # one at least: a GAP needs one
    test_classes = np.full(test_count, -1)
    test_classes[:landmarks] = rng.integers(0, len(sizes), landmarks)
    test = pd.DataFrame({"id": new_ids(rng, test_count, taken), "label": rng.permutation(test_classes)})
    usage = rng.choice(["Public", "Private"], test_count, p=[1 / 3, 2 / 3])
    usage[rng.uniform(size=test_count) < gldv2.ignored_fraction] = "Ignored"
    test["usage"] = usage
    pool = pd.DataFrame({"id": new_ids(rng, settings.scaled(settings.nonlandmark_images), taken), "label": -1})
    return {"train": train, "test": test, "pool": pool, "landmark_ids": landmark_ids}


def _draw(job) -> list:
    """JPEG bytes of each (id, class) of a chunk; class -1 draws a photo of no landmark. Runs in a worker."""
    rows, seed, image_size, quality = job
    blueprints, images = {}, []
    for image_id, label in rows:
        if label >= 0 and label not in blueprints:
            blueprints[label] = make_blueprint(np.random.default_rng([seed, 1, label]))
        photo = render(np.random.default_rng([seed, int(image_id, 16)]), image_size, blueprints.get(label))
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=quality)
        images.append(buffer.getvalue())
    return images


def _drawn(frame: pd.DataFrame, settings, pool, desc: str):
    """(id, JPEG bytes) of every photo of frame, in its order, drawn on the worker processes of pool."""
    rows = list(zip(frame["id"], frame["label"].tolist(), strict=True))
    chunks = [rows[start : start + 256] for start in range(0, len(rows), 256)]
    jobs = ((chunk, settings.seed, settings.image_size, settings.jpeg_quality) for chunk in chunks)
    with tqdm(total=len(rows), desc=desc, unit="img", mininterval=2) as progress:
        for chunk, images in zip(chunks, pool.imap(_draw, jobs), strict=True):
            progress.update(len(chunk))
            yield from zip((image_id for image_id, _ in chunk), images, strict=True)


def _write_shards(frame, split: str, shard_count: int, folder: Path, settings, pool) -> None:
    """frame's photos as split/images_NNN.tar (members a/b/c/<id>.jpg, as GLDv2's) with md5sum/ files."""
    per_shard = math.ceil(len(frame) / shard_count)
    drawn = _drawn(frame, settings, pool, f"rehearsal {split}")
    for index in range(shard_count):
        name = f"images_{index:03d}"
        shard = folder / split / f"{name}.tar"
        shard.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for image_id, data in itertools.islice(drawn, per_shard):
                info = tarfile.TarInfo(f"{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        md5 = folder / "md5sum" / split / f"md5.{name}.txt"
        md5.parent.mkdir(parents=True, exist_ok=True)
        md5.write_text(f"{kaggle.md5_of(shard)}  {name}.tar\n")


def _write_competition_files(planned: dict, folder: Path, competition: str) -> None:
    """The CSVs as the Kaggle API gives them (one zip), and the solution file where GLDv2's mirror keeps it."""
    train, test, landmark_ids = planned["train"], planned["test"], planned["landmark_ids"]
    url = "https://rehearsal.invalid/" + train["id"] + ".jpg"  # the real CSVs' urls are never fetched either
    files = {
        "train.csv": pd.DataFrame({"id": train["id"], "url": url, "landmark_id": landmark_ids[train["label"]]}),
        "test.csv": pd.DataFrame({"id": test["id"], "url": "https://rehearsal.invalid/" + test["id"] + ".jpg"}),
        "sample_submission.csv": pd.DataFrame({"id": test["id"], "landmarks": ""}),
    }
    archive = folder / "competitions" / f"{competition}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, frame in files.items():  # dated 1980-01-01, so the same settings give the same bytes
            bundle.writestr(
                zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), frame.to_csv(index=False), zipfile.ZIP_DEFLATED
            )
    truth = [str(landmark_ids[label]) if label >= 0 else "" for label in test["label"].tolist()]
    solution = pd.DataFrame({"id": test["id"], "landmarks": truth, "Usage": test["usage"]})
    write_csv(folder / "ground_truth" / "recognition_solution_v2.1.csv", solution)


def build_mirror(folder, settings, competition: str) -> dict:
    """The mirror of these settings in folder (built beside it, then renamed), unless it is there already.
    Returns its manifest: the settings it was built from, its shard counts and sizes."""
    folder = Path(folder)
    wanted = settings.model_dump()
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest["settings"] == wanted:
            return manifest
    started = time.perf_counter()
    planned = plan(settings)
    gldv2 = settings.gldv2
    shards = {
        split: max(1, math.ceil(len(planned[split]) / (total / count)))
        for split, total, count in (
            ("train", gldv2.images, gldv2.train_shards),
            ("test", gldv2.test_images, gldv2.test_shards),
        )
    }
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with multiprocessing.get_context("spawn").Pool(len(os.sched_getaffinity(0))) as pool:
        for split in ("train", "test"):
            _write_shards(planned[split], split, shards[split], partial, settings, pool)
        for image_id, data in _drawn(planned["pool"], settings, pool, "rehearsal pool"):
            path = partial / "nonlandmarks" / image_id[0] / f"{image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (partial / "nonlandmarks").mkdir(exist_ok=True)
    _write_competition_files(planned, partial, competition)
    manifest = {
        "settings": wanted,
        "competition": competition,
        "classes": len(class_sizes(settings)),
        "train_images": len(planned["train"]),
        "test_images": len(planned["test"]),
        "test_landmarks": int((planned["test"]["label"] >= 0).sum()),
        "nonlandmark_images": len(planned["pool"]),
        "train_shards": shards["train"],
        "test_shards": shards["test"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(partial / "manifest.json", manifest)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return manifest


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, and `Range: bytes=N-` as GLDv2's mirror does (the standard handler ignores ranges):
    an interrupted shard resumes where it stopped."""

    def send_head(self):
        asked = self.headers.get("Range", "")
        start = asked.removeprefix("bytes=").removesuffix("-")
        path = Path(self.translate_path(self.path))
        if not (asked.startswith("bytes=") and asked.endswith("-") and start.isdigit() and path.is_file()):
            return super().send_head()
        size, start = path.stat().st_size, int(start)
        if start >= size:
            self.send_error(416)
            return None
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return handle

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder, handler=RangeHandler):
    """folder over HTTP on a free port of this machine, for the length of the block; yields its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *args: handler(*args, directory=str(Path(folder).resolve()))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class MirrorApi:
    """The Kaggle API's competition download, from the mirror: the competition's zip, skipped when it is there
    already, as the real client does."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def competition_download_files(self, competition, path=None, quiet=True):
        archive = Path(path) / f"{competition}.zip"
        if not archive.exists():
            kaggle.fetch(f"{self.base_url}/competitions/{competition}.zip", archive)


def prepare_mirror(settings, cache_dir) -> tuple:
    """The mirror of these settings in cache_dir/<hash of them>/mirror, built there unless it is there already.
    Returns (that folder's parent, the manifest)."""
    digest = hashlib.sha1(json.dumps(settings.model_dump(), sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / digest
    # the competition whose images are GLDv2's tar shards
    return folder, build_mirror(folder / "mirror", settings, "landmark-recognition-2019")


def download(dest, settings, cache_dir, shard_bytes: int) -> tuple:
    """The rehearsal's data in dest, in the Kaggle layout: its mirror built (once) in cache_dir, served and fetched
    by the kaggle source's download code (shard_bytes: as it packs a zip's images, though the rehearsal's are all in
    GLDv2's shards). Returns what arrived, and the folder of its non-landmark pool, to be
    added as a folder of photos is (data.nonlandmarks)."""
    folder, manifest = prepare_mirror(settings, cache_dir)
    with serve(folder / "mirror") as url:
        source = Kaggle(
            competition=manifest["competition"],
            shard_base_url=url,
            train_shards=manifest["train_shards"],
            test_shards=manifest["test_shards"],
            solution_url=f"{url}/ground_truth/recognition_solution_v2.1.csv",
        )
        summary = kaggle.download(dest, source, folder / "downloads", shard_bytes, api=MirrorApi(url))
    summary["classes"] = manifest["classes"]
    summary["test_landmarks"] = manifest["test_landmarks"]
    summary["mirror_seconds"] = manifest["seconds"]
    return summary, folder / "mirror" / "nonlandmarks"
