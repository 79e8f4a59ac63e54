"""Spatial verification: do two photos show the same rigid scene? SIFT keypoints (OpenCV, no weights) matched with
Lowe's ratio test, then a homography fitted by MAGSAC++ (`cv2.USAC_MAGSAC`); the matches it keeps are the inliers.
Two photos of one building share many; unrelated photos share few, by chance (docs/benchmarks.md: how many).

Each photo's features are extracted once, from the stored photo with its long side capped, the first time the
`verify` step (landmark.recognition.steps) checks a pair it is in, and kept in a FeatureCache (the recognize stage's
local_features/<variant>, a DVC output that persists across runs), so that checking more queries or more neighbours
extracts only the photos not seen yet. `Photos` counts each pair's inliers once.
"""

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from landmark.data.shards import FileReader, image_reader
from landmark.files import atomic_path, write_json

DESCRIPTOR_SIZE = 128  # SIFT's
SPLITS = ("train", "nonlandmark", "test")  # the splits recognition looks at, one FeatureSet each, kept
FILES = "files"  # the "split" of image files named by their paths (landmark predict's photos): never kept
FIELDS = ("ids", "starts", "counts", "points", "descriptors")  # a FeatureSet's arrays, each saved as one .npy


def extract(blob: bytes, max_side: int, max_features: int):
    """(points: n × 2 float32, descriptors: n × 128 uint8) of an encoded photo decoded in grey with its long side
    capped at max_side, or None where OpenCV cannot read it."""
    try:
        grey = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE) if blob else None
    except cv2.error:  # some truncated or odd headers raise rather than return None
        grey = None
    if grey is None:
        return None
    scale = max_side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=max_features).detectAndCompute(grey, None)
    points = np.array([keypoint.pt for keypoint in keypoints], np.float32).reshape(-1, 2)
    if descriptors is None:
        descriptors = np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    return points, np.clip(np.rint(descriptors), 0, 255).astype(np.uint8)  # SIFT's values are whole, up to 255


def inliers(first, second, ratio: float, max_error: float) -> int:
    """How many of the two photos' ratio-test matches one homography explains within max_error pixels."""
    (first_points, first_descriptors), (second_points, second_descriptors) = first, second
    if len(first_descriptors) < 4 or len(second_descriptors) < 4:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(
        first_descriptors.astype(np.float32), second_descriptors.astype(np.float32), k=2
    )
    good = [
        best
        for best, second_best in (pair for pair in pairs if len(pair) == 2)
        if best.distance < ratio * second_best.distance
    ]
    if len(good) < 4:  # a homography needs four
        return 0
    source = first_points[[match.queryIdx for match in good]]
    target = second_points[[match.trainIdx for match in good]]
    try:
        _, mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, max_error)
    except cv2.error:  # degenerate matches (all on one point or line) have no homography
        return 0
    return 0 if mask is None else int(mask.sum())


@dataclass(frozen=True)
class FeatureSet:
    """Local features of photos by row: row i's are points/descriptors[starts[i] : starts[i] + counts[i]]; a count
    of -1 marks a photo OpenCV could not read."""

    ids: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray

    @classmethod
    def of(cls, ids, features) -> "FeatureSet":
        """From each id's extract() result (None: unreadable)."""
        counts = np.array([-1 if found is None else len(found[0]) for found in features], np.int64)
        sizes = np.maximum(counts, 0)
        starts = np.cumsum(sizes) - sizes
        read = [found for found in features if found is not None]
        points = np.concatenate([found[0] for found in read]) if read else np.zeros((0, 2), np.float32)
        descriptors = np.concatenate([found[1] for found in read]) if read else np.zeros((0, DESCRIPTOR_SIZE), np.uint8)
        return cls(np.asarray(ids, dtype=str), starts, counts, points, descriptors)

    def save(self, folder, name: str) -> None:
        """As folder/name.<field>.npy, byte for byte the same for the same features (a zip would stamp the time)."""
        for field in FIELDS:
            with atomic_path(Path(folder) / f"{name}.{field}.npy") as temporary, open(temporary, "wb") as handle:
                np.save(handle, getattr(self, field), allow_pickle=False)

    @classmethod
    def load(cls, folder, name: str) -> "FeatureSet":
        """The set save() wrote; an empty one where any of its files is missing."""
        paths = [Path(folder) / f"{name}.{field}.npy" for field in FIELDS]
        if not all(path.is_file() for path in paths):
            return cls.of([], [])
        return cls(*(np.load(path, allow_pickle=False) for path in paths))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, row: int):
        """(points, descriptors) of row's photo, or None where it was unreadable."""
        count = int(self.counts[row])
        if count < 0:
            return None
        part = slice(int(self.starts[row]), int(self.starts[row]) + count)
        return self.points[part], self.descriptors[part]

    def joined(self, other: "FeatureSet") -> "FeatureSet":
        """This set's photos, then other's."""
        return FeatureSet(
            np.concatenate([self.ids, other.ids]),
            np.concatenate([self.starts, other.starts + len(self.points)]),
            np.concatenate([self.counts, other.counts]),
            np.concatenate([self.points, other.points]),
            np.concatenate([self.descriptors, other.descriptors]),
        )

    @cached_property
    def _rows(self) -> pd.Index:
        return pd.Index(self.ids)  # built once: a pair's lookup would otherwise hash every id of the split again

    def rows_of(self, ids) -> np.ndarray:
        """Each id's row; -1 where this set does not hold it."""
        return self._rows.get_indexer(pd.Index(np.asarray(ids, dtype=str)))


def extract_photos(job) -> list:
    """extract() of each photo of ids in one split (job: images_dir, split, ids, max_side, max_features)."""
    images_dir, split, ids, max_side, max_features = job
    cv2.setNumThreads(1)  # one photo per process: the processes share the cores
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # an unreadable photo is counted, not logged
    reader = FileReader(ids) if split == FILES else image_reader(images_dir, split, ids)
    return [extract(reader.read(position), max_side, max_features) for position in range(len(ids))]


def extracted(jobs, processes: int):
    """extract_photos() of each job, in order, on spawned processes where there is more than one job."""
    if processes == 1 or len(jobs) == 1:
        yield from map(extract_photos, jobs)
        return
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:  # OpenCV's
        yield from pool.map(extract_photos, jobs)  # threads do not survive a fork


class FeatureCache:
    """The local features of stored photos (images_dir: the pack stage's output or the Kaggle layout), extracted
    the first time a check needs them and kept in `folder`, one FeatureSet per split: verifying more queries or more
    neighbours extracts only the photos not seen before. A cache made with another max_side or max_features starts
    afresh. Photos of the FILES split (ids: their paths) are extracted alike but never saved."""

    def __init__(self, folder, images_dir, max_side: int, max_features: int, processes: int = 1):
        self.folder, self.images_dir, self.processes = Path(folder), images_dir, processes
        self.extraction = {"max_side": max_side, "max_features": max_features}
        made_with = self.folder / "extraction.json"
        self.fresh = not (made_with.is_file() and json.loads(made_with.read_text()) == self.extraction)
        self.sets = {
            split: FeatureSet.of([], []) if self.fresh else FeatureSet.load(self.folder, split) for split in SPLITS
        }
        self.extracted = 0  # photos this run has extracted

    def ensure(self, split: str, ids, desc: str | None = None) -> None:
        """Extract the photos of ids (in split) that the cache does not hold yet."""
        known = self.sets.setdefault(split, FeatureSet.of([], []))
        missing = np.unique(np.asarray(ids, dtype=str))
        missing = missing[known.rows_of(missing) < 0]
        if not len(missing):
            return
        chunk = max(1, min(64, -(-len(missing) // self.processes)))
        jobs = [(self.images_dir, split, missing[start : start + chunk], *self.extraction.values())
                for start in range(0, len(missing), chunk)]  # fmt: skip
        features = []
        progress = tqdm(total=len(missing), desc=desc and f"{desc}: local features", disable=desc is None, leave=False)
        with progress:
            for found in extracted(jobs, self.processes):
                features.extend(found)
                progress.update(len(found))
        self.sets[split] = known.joined(FeatureSet.of(missing, features))
        self.extracted += len(missing)

    def features(self, split: str, image_id: str):
        """(points, descriptors) of a photo ensure() has seen, or None where OpenCV could not read it."""
        known = self.sets.get(split)
        row = -1 if known is None else int(known.rows_of([image_id])[0])
        return None if row < 0 else known[row]

    def save(self) -> None:
        """Write what this run extracted (and, the first time, the empty sets and how they are extracted)."""
        if self.extracted or self.fresh:
            for split in SPLITS:
                self.sets[split].save(self.folder, split)
            write_json(self.folder / "extraction.json", self.extraction)


class Photos:
    """Where one query set's photos and its gallery's are (split and id, by query and by gallery position), their
    features through a FeatureCache, and the inliers of the pairs counted so far (another method checking the same
    pair reuses them; `checked` tells what the last check of each pair found, for a picture of it)."""

    def __init__(self, cache: FeatureCache, query_splits, query_ids, gallery_ids, gallery_split: str = "train"):
        self.cache, self.gallery_split = cache, gallery_split
        self.query_splits, self.query_ids = np.asarray(query_splits, dtype=str), np.asarray(query_ids, dtype=str)
        self.gallery_ids = np.asarray(gallery_ids, dtype=str)
        self._inliers = {}  # (query, position, ratio, max_error) -> inliers
        self._last = {}  # (query, position) -> the inliers its last check found

    def inliers(self, checked, positions, ratio: float, max_error: float, desc: str | None = None) -> np.ndarray:
        """len(checked) × k: the inliers between each checked query's photo and the gallery photos at its row of
        positions (0 where a position is -1 or a photo unreadable); with desc, progress bars and a one-line cost
        summary."""
        started, before = time.perf_counter(), self.cache.extracted
        checked = np.asarray(checked, dtype=np.int64)
        for split in np.unique(self.query_splits[checked]):
            self.cache.ensure(split, self.query_ids[checked][self.query_splits[checked] == split], desc)
        self.cache.ensure(self.gallery_split, self.gallery_ids[positions[positions >= 0]], desc)
        found = np.zeros(positions.shape, np.int64)
        counted, unreadable = 0, 0
        for row in tqdm(range(len(checked)), desc=desc, disable=desc is None, unit="query", leave=False):
            query = int(checked[row])
            for column, position in enumerate(positions[row]):
                if position < 0:
                    continue
                key = (query, int(position), ratio, max_error)
                if key not in self._inliers:
                    first = self.cache.features(self.query_splits[query], self.query_ids[query])
                    second = self.cache.features(self.gallery_split, self.gallery_ids[position])
                    readable = first is not None and second is not None
                    self._inliers[key] = inliers(first, second, ratio, max_error) if readable else 0
                    counted, unreadable = counted + 1, unreadable + (not readable)
                found[row, column] = self._last[query, int(position)] = self._inliers[key]
        if desc is not None:
            skipped = f", {unreadable} without a readable photo (0 inliers)" if unreadable else ""
            print(
                f"{desc}: {counted} new pairs of {len(checked)} queries matched, {self.cache.extracted - before} "
                f"photos' features extracted, in {time.perf_counter() - started:.1f} s{skipped}",
                file=sys.stderr,  # beside the progress bars: landmark predict's answers alone go to stdout
            )
        return found

    def checked(self, positions) -> np.ndarray:
        """queries × k: the inliers the last check of each query's photo with the gallery photo at its row of
        positions found; -1 where that pair was never checked."""
        return np.array(
            [[self._last.get((query, int(position)), -1) for position in row] for query, row in enumerate(positions)],
            np.int64,
        ).reshape(np.shape(positions))
