"""What each step beyond one look costs at GLDv2 scale: αQE, DBA and SuperGlobal on a faiss gallery of clustered
vectors (benchmarks/retrieval.py's), and spatial verification on real photos, measured on this machine and
extrapolated to the Kaggle test set (117,577 queries) against all of GLDv2 (4,132,914 train photos).

- aqe, superglobal: each method's time over the queries less knn's, per query, times 117,577. Their work per query
  does not grow with the gallery beyond the searches they add, which the gallery's index sets (docs/benchmarks.md,
  "Retrieval at GLDv2 scale": the default index's search time at 4.13M).
- dba: one search per gallery image plus the index refilled, timed on --gallery images and scaled to 4.13M; its
  memory is each image's neighbours and their weights (int64 and float32, k of each per image) and a second index.
- verify: SIFT per photo at --max-side and one match per pair (ratio test, MAGSAC++), on crops and warps of
  scikit-learn's sample photos; extrapolated for --share of the queries, each against its --neighbours nearest, on
  --processes processes: the pairs, and the photos they need (each extracted once, the first time a pair needs it).

Usage: python benchmarks/reranking.py [--gallery 400000] [--classes 20000] [--queries 5000] [--photos 24]
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import faiss
import numpy as np
import pandas as pd
from sklearn.datasets import load_sample_image

sys.path.insert(0, str(Path(__file__).parents[1]))
from benchmarks.retrieval import ClusteredVectors, build  # noqa: E402
from landmark.recognition.gallery import Gallery, Queries  # noqa: E402
from landmark.recognition.method import Method  # noqa: E402
from landmark.recognition.search import Whitening  # noqa: E402
from landmark.recognition.verification import extract, inliers  # noqa: E402
from landmark.settings import load_settings  # noqa: E402

TEST_QUERIES, GLDV2_IMAGES = 117_577, 4_132_914


def gallery_of(vectors: ClusteredVectors, factory: str, search: str) -> Gallery:
    index, seconds = build(vectors, factory)
    faiss.ParameterSpace().set_index_parameters(index, search)
    embeddings = np.concatenate([chunk for _, chunk in vectors.chunks()])
    rows = pd.DataFrame({"id": np.arange(len(embeddings)).astype(str), "landmark_id": vectors.labels})
    empty = faiss.IndexFlatIP(vectors.dimension)
    none = pd.DataFrame({"id": [], "landmark_id": np.zeros(0, np.int64)})
    pool = faiss.IndexFlatIP(vectors.dimension)
    pool.add(vectors.queries(2_000)[::-1].copy())
    parts = {"gallery": (index, rows, embeddings), "dev": (empty, none, embeddings[:0])}
    print(f"gallery: {len(embeddings):,} vectors in {factory} ({search}), built in {seconds:.0f} s")
    return Gallery(Whitening(), parts, pool)


def time_methods(gallery: Gallery, queries: np.ndarray, settings, names) -> dict:
    found = Queries.find(gallery, queries, (np.full(len(queries), -1), np.zeros(len(queries))), settings.neighbours)
    seconds = {}
    for name in names:
        started = time.perf_counter()
        Method.parse(name, settings).rank(found)
        seconds[name] = time.perf_counter() - started
    return seconds


def retrieval_steps(args, settings) -> None:
    vectors = ClusteredVectors(args.gallery, args.classes, 256, noise=1.0, seed=0)
    gallery = gallery_of(vectors, args.factory, args.search)
    queries = vectors.queries(args.queries)
    names = ["knn", "knn+aqe", "knn+superglobal"]
    seconds = time_methods(gallery, queries, settings, names)
    for name in names[1:]:
        extra = (seconds[name] - seconds["knn"]) / len(queries)
        print(
            f"{name}: {1000 * extra:.2f} ms a query beyond knn's ({seconds[name]:.1f} s against {seconds['knn']:.1f} s "
            f"for {len(queries):,}); 117,577 queries: {extra * TEST_QUERIES / 60:.1f} min more"
        )
    tracemalloc.start()  # numpy's arrays, not faiss's index: what the augmented gallery keeps beside its index
    started = time.perf_counter()
    dba = settings.steps["dba"]
    gallery.augmented(("gallery",), dba["neighbours"], dba["alpha"])
    seconds_dba = time.perf_counter() - started
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scale = GLDV2_IMAGES / args.gallery
    print(
        f"dba: {seconds_dba:.1f} s for {args.gallery:,} gallery images ({1000 * seconds_dba / args.gallery:.3f} ms "
        f"each; arrays kept {kept / 2**20:.1f} MiB, at most {peak / 2**20:.1f} MiB while built); 4,132,914: "
        f"{seconds_dba * scale / 60:.0f} min, {kept * scale / 2**30:.2f} GiB of arrays kept and a second index"
    )


def sample_photos(count: int, rng) -> list:
    """JPEG bytes of crops of scikit-learn's two sample photos (640 × 427), each seen through a random homography."""
    photos = []
    for number in range(count):
        photo = load_sample_image(("china.jpg", "flower.jpg")[number % 2])
        height, width = photo.shape[:2]
        corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        moved = (corners + rng.uniform(-0.08, 0.08, (4, 2)) * [width, height]).astype(np.float32)
        warped = cv2.warpPerspective(photo, cv2.getPerspectiveTransform(corners, moved), (width, height))
        photos.append(cv2.imencode(".jpg", cv2.cvtColor(warped, cv2.COLOR_RGB2BGR))[1].tobytes())
    return photos


def verification(args, settings) -> None:
    cv2.setNumThreads(1)  # as the local_features stage runs it: one photo per process
    photos = sample_photos(args.photos, np.random.default_rng(0))
    started = time.perf_counter()
    features = [extract(photo, args.max_side, args.max_features) for photo in photos]
    per_photo = (time.perf_counter() - started) / len(photos)
    verify = settings.steps["verify"]
    pairs = [(first, second) for first in range(len(features)) for second in range(first + 1, len(features))]
    started, counts = time.perf_counter(), []
    for first, second in pairs:
        counts.append(inliers(features[first], features[second], verify["ratio"], verify["max_error"]))
    per_pair = (time.perf_counter() - started) / len(pairs)
    same = [count for (first, second), count in zip(pairs, counts, strict=True) if first % 2 == second % 2]
    other = [count for (first, second), count in zip(pairs, counts, strict=True) if first % 2 != second % 2]
    checked = round(args.share * TEST_QUERIES)
    checked_pairs = checked * args.neighbours
    needed = checked + checked_pairs  # at most: neighbours the queries share are extracted once
    cores = args.processes
    print(
        f"verify: SIFT at {args.max_side} px {1000 * per_photo:.0f} ms a photo, a pair {1000 * per_pair:.1f} ms "
        f"(one core); inliers: same scene min {min(same)} median {int(np.median(same))}, other scene max {max(other)}"
    )
    print(
        f"verify at Kaggle scale ({args.share:.0%} of 117,577 = {checked:,} queries × {args.neighbours}): "
        f"{checked_pairs:,} pairs {checked_pairs * per_pair / cores / 60:.1f} min + their photos (at most "
        f"{needed:,}, the first time) {needed * per_photo / cores / 60:.1f} min on {cores} processes"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, default=400_000)
    parser.add_argument("--classes", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--factory", default="IVF1024,PQ128x4fs,Refine(SQ8)")
    parser.add_argument("--search", default="nprobe=64,k_factor_rf=64")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--max-features", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-retrieval", action="store_true")
    args = parser.parse_args()
    settings = load_settings(Path(__file__).parents[1] / "params.yaml").recognize
    if not args.skip_retrieval:
        retrieval_steps(args, settings)
    verification(args, settings)


if __name__ == "__main__":
    main()
