"""Retrieval at GLDv2 scale on this machine: faiss indexes over vectors as many as GLDv2-clean (1,580,470) or
all of GLDv2 (4,132,914), searched by as many queries as the Kaggle test set (117,577); prints, per index, the
build time, the search time of every query, the index's memory and its recall@1 against exact search.

The vectors lie as real embeddings do, clustered by class: GLDv2's class count with a long tail of class sizes
(a power law from its largest class, 10,247 images, down to one image, fitted to the image count), each image its
class centre plus noise, L2-normalised; each query an image of a class drawn by size, likewise. (Uniform random
vectors have no neighbour structure: no approximate index finds their nearest neighbour, so they say nothing.)
Recall@1 is the share of queries whose first neighbour is exact search's first; beside it, the share whose first
neighbour is of the same class as exact's, which is what recognition reads (within a class the nearest images
are near ties that an 8-bit code may order otherwise). Exact search of all queries would take hours on 2 cores,
so both are measured on a seeded sample of queries
(`--exact-queries`), whose exact nearest neighbour is found by streaming the gallery in chunks. The gallery is
drawn chunk by chunk from fixed seeds, so memory holds one chunk, the index and the queries.

Usage: python benchmarks/retrieval.py [--gallery N ...] [--classes C ...] [--factory F ...] [--search S ...]
e.g.   python benchmarks/retrieval.py --gallery 1580470 4132914 --classes 81313 203094 --factory IVF4096,SQ8 \
           --search nprobe=16 nprobe=32
"""

import argparse
import resource
import time

import faiss
import numpy as np

CHUNK = 250_000
LARGEST_CLASS = 10_247


def class_sizes(images: int, classes: int) -> np.ndarray:
    """A power law n_k = max(1, LARGEST · k^-a) over the classes, a fitted so the sizes add up to images."""
    ranks = np.arange(1, classes + 1, dtype=np.float64)
    low, high = 0.01, 5.0
    for _ in range(60):
        exponent = (low + high) / 2
        total = np.maximum(1, np.round(LARGEST_CLASS * ranks**-exponent)).sum()
        low, high = (exponent, high) if total > images else (low, exponent)
    sizes = np.maximum(1, np.round(LARGEST_CLASS * ranks**-exponent)).astype(np.int64)
    sizes[0] += images - sizes.sum()  # the rounding's remainder goes to the largest class
    return sizes


def normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class ClusteredVectors:
    """Gallery and queries around class centres, every part drawn from a seed of its own."""

    def __init__(self, images: int, classes: int, dimension: int, noise: float, seed: int):
        self.dimension, self.noise, self.seed = dimension, noise, seed
        self.centres = normalised(np.random.default_rng([seed, 0]).standard_normal((classes, dimension)))
        self.sizes = class_sizes(images, classes)
        self.labels = np.repeat(np.arange(classes), self.sizes)
        np.random.default_rng([seed, 1]).shuffle(self.labels)

    def _around(self, labels, rng) -> np.ndarray:
        scatter = rng.standard_normal((len(labels), self.dimension), dtype=np.float32)
        return normalised(self.centres[labels] + self.noise / np.sqrt(self.dimension) * scatter)

    def chunks(self):
        for number, start in enumerate(range(0, len(self.labels), CHUNK)):
            yield start, self._around(self.labels[start : start + CHUNK], np.random.default_rng([self.seed, 2, number]))

    def queries(self, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3])
        return self._around(rng.choice(len(self.centres), count, p=self.sizes / self.sizes.sum()), rng)


def exact_top1(vectors: ClusteredVectors, queries: np.ndarray):
    """(positions, seconds): the exact nearest gallery vector of each query, streaming the gallery."""
    started = time.perf_counter()
    best, where = np.full(len(queries), -np.inf, dtype=np.float32), np.full(len(queries), -1)
    for start, chunk in vectors.chunks():
        index = faiss.IndexFlatIP(vectors.dimension)
        index.add(chunk)
        similarities, positions = index.search(queries, 1)
        better = similarities[:, 0] > best
        best[better], where[better] = similarities[better, 0], positions[better, 0] + start
    return where, time.perf_counter() - started


def build(vectors: ClusteredVectors, factory: str):
    """(index, seconds): factory's index trained on a seeded sample of the gallery, then every vector added."""
    started = time.perf_counter()
    index = faiss.index_factory(vectors.dimension, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist if "IVF" in factory else 256
        _, first = next(vectors.chunks())
        index.train(first[: max(64 * lists, 10_000)])
    for _, chunk in vectors.chunks():
        index.add(chunk)
    return index, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, nargs="+", default=[1_580_470, 4_132_914])
    parser.add_argument("--classes", type=int, nargs="+", default=[81_313, 203_094], help="one per gallery size")
    parser.add_argument("--queries", type=int, default=117_577)
    parser.add_argument("--exact-queries", type=int, default=2_000)
    parser.add_argument("--factory", nargs="+", default=["IVF4096,SQ8", "IVF4096,PQ64"])
    parser.add_argument(
        "--search",
        nargs="+",
        default=["nprobe=8", "nprobe=16", "nprobe=32"],
        help="faiss search parameters, a setting per value: nprobe=16 (IVF), efSearch=128 (HNSW), "
        "nprobe=64,k_factor_rf=32 (a Refine index)",
    )
    # What the index stage indexes: the embeddings whitened to index.whitening_dims (256 by default).
    parser.add_argument("--dimension", type=int, default=256)
    parser.add_argument(
        "--noise", type=float, default=0.9, help="scatter around the class centre (cosine ≈ 1/√(1+noise²))"
    )
    args = parser.parse_args()
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    for images, classes in zip(args.gallery, args.classes, strict=True):
        vectors = ClusteredVectors(images, classes, args.dimension, args.noise, seed=0)
        queries = vectors.queries(args.queries)
        sample = queries[np.sort(np.random.default_rng(4).permutation(len(queries))[: args.exact_queries])]
        truth, exact_seconds = exact_top1(vectors, sample)
        print(
            f"{images:,} vectors of {classes:,} classes (largest {vectors.sizes[0]:,}, "
            f"{np.mean(vectors.sizes == 1):.0%} "
            f"of one image): exact search {exact_seconds:.1f} s for {len(sample):,} queries, so about "
            f"{exact_seconds * len(queries) / len(sample) / 60:.0f} min for all {len(queries):,}"
        )
        for factory in args.factory:
            index, build_seconds = build(vectors, factory)
            size = len(faiss.serialize_index(index)) / 2**30
            for setting in args.search:
                faiss.ParameterSpace().set_index_parameters(index, setting)
                started = time.perf_counter()
                _, found = index.search(queries, 1)
                seconds = time.perf_counter() - started
                _, found_sample = index.search(sample, 1)
                recall = float(np.mean(found_sample[:, 0] == truth))
                same_class = float(np.mean(vectors.labels[found_sample[:, 0]] == vectors.labels[truth]))
                print(
                    f"  {factory} {setting}: built in {build_seconds:.0f} s, {size:.2f} GiB; "
                    f"{len(queries):,} queries in {seconds:.1f} s; recall@1 {recall:.3f} of exact "
                    f"(the same class as exact's first: {same_class:.3f})"
                )
            del index
        print(f"  peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
