"""Search: PCA whitening of the embeddings and faiss indexes over them, built, written, read and searched. Nothing
here imports torch, so the index and recognize stages start in a second.

- Whitening (`Whitening`): learned on the gallery's train images, applied to every embedding searched or compared.
- Index (`build_index`): exact inner product (IndexFlatIP) below a size, an approximate faiss index (a factory
  string such as `IVF4096,SQ8`) from there on; on the whitened, L2-normalised embeddings inner product is cosine.
"""

import hashlib

import numpy as np
from tqdm import tqdm

from landmark.data.layout import read_csv
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.settings import Index

SEARCH_CHUNK = 16384  # queries per faiss call: a progress bar step, and a bounded result buffer


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise UserError("faiss is not installed; pip install faiss-cpu (or faiss-gpu on a GPU machine)") from None
    return faiss


def use_gpu(device: str) -> bool:
    """Whether faiss runs on the GPU: runtime.device allows it and the faiss build has GPUs (faiss-gpu)."""
    faiss = faiss_module()
    return device != "cpu" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def chunks(start: int, stop: int, size: int = 65_536):
    """Slices of at most `size` rows from start to stop: what one whitening, search or sum holds at a time, so
    that its memory does not grow with GLDv2's millions of rows."""
    return (slice(first, min(first + size, stop)) for first in range(start, stop, size))


def combined(parts, weights) -> np.ndarray:
    """An ensemble's descriptors: the rows of each part (whitened vectors, one part per variant) side by side, each
    times sqrt(its weight / the weights' sum), L2-normalised, so that the inner product of two is the weighted mean
    of the variants' similarities."""
    shares = np.sqrt(np.asarray(weights, dtype=np.float64) / np.sum(weights))
    return normalized(np.concatenate([share * part for share, part in zip(shares, parts, strict=True)], axis=1))


class Whitening:
    """PCA whitening learned on the gallery (Jégou & Chum 2012; Radenović et al. 2018 for retrieval): centre,
    rotate onto the principal axes, scale each by 1 / sqrt(its variance + shrinkage · the mean variance), keep
    the first `dims`, L2-normalise. Pooled CNN descriptors share a large common part (after a ReLU every cosine is
    near 1); whitening takes it away and evens out the axes, so a similarity says more. The shrinkage keeps the
    weakest axes, estimated from few images, from being blown up into noise. Without a projection it is the
    identity."""

    def __init__(self, mean=None, projection=None):
        self.mean, self.projection = mean, projection

    @classmethod
    def fit(cls, vectors, dims: int, rows=None, *, shrinkage: float, sample: int, seed: int):
        """Learned on a seeded sample of vectors (n × d, memory-mapped is fine) at rows (positions; None: all),
        read a chunk at a time: the covariance is d × d, whatever n, where an SVD of the sample would hold it
        three times over."""
        rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
        rows = np.sort(rows[np.random.default_rng(seed).permutation(len(rows))[:sample]])
        chunks = [rows[start : start + 16_384] for start in range(0, len(rows), 16_384)]
        mean = sum(np.asarray(vectors[chunk], dtype=np.float64).sum(axis=0) for chunk in chunks) / len(rows)
        covariance = np.zeros((vectors.shape[1], vectors.shape[1]))
        for chunk in chunks:
            centred = np.asarray(vectors[chunk], dtype=np.float64) - mean
            covariance += centred.T @ centred
        variance, axes = np.linalg.eigh(covariance / len(rows))
        rank = min(len(rows), len(variance))  # the sample spans at most n axes, as an SVD of it would
        variance, axes = variance[::-1][:rank], axes[:, ::-1][:, :rank]
        keep = slice(0, min(dims, rank))
        projection = axes[:, keep] / np.sqrt(np.maximum(variance[keep], 0) + shrinkage * variance.mean())
        return cls(mean.astype(np.float32), projection.astype(np.float32))

    def __call__(self, vectors) -> np.ndarray:
        """The vectors whitened, a chunk at a time: GLDv2's 4.1M × 2048 less the mean would be 34 GB at once."""
        if self.projection is None:
            return np.ascontiguousarray(vectors, dtype=np.float32)
        whitened = np.empty((len(vectors), self.projection.shape[1]), dtype=np.float32)
        for chunk in chunks(0, len(vectors)):
            whitened[chunk] = normalized((np.asarray(vectors[chunk], dtype=np.float32) - self.mean) @ self.projection)
        return whitened

    def digest(self) -> int:
        """64 bits that change with the whitening (0: none), for keys of vectors read through it."""
        if self.projection is None:
            return 0
        hashed = hashlib.blake2b(self.mean.tobytes() + self.projection.tobytes(), digest_size=8)
        return int.from_bytes(hashed.digest(), "little")

    def save(self, path) -> None:
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **({} if self.projection is None else {"mean": self.mean, "projection": self.projection}))

    @classmethod
    def load(cls, path) -> "Whitening":
        try:
            with np.load(path) as saved:
                return cls(saved["mean"], saved["projection"]) if "projection" in saved else cls()
        except FileNotFoundError:
            raise UserError(f"{path}: no such file; run the index stage (dvc repro)") from None


def exact_index(vectors: np.ndarray):
    """A faiss exact inner-product index (IndexFlatIP) over vectors (n × d float32)."""
    index = faiss_module().IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_index(vectors: np.ndarray, indexing: Index, gpu: bool = False):
    """A faiss inner-product index over vectors (n × d float32), as params.yaml's index section says: exact below
    exact_below vectors, else the factory's approximate index, trained on a seeded sample of train_per_list
    vectors per inverted list (train_at_least at least). Built on the GPU when gpu, returned on the CPU (to write
    it)."""
    faiss, factory = faiss_module(), indexing.factory
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    if len(vectors) < indexing.exact_below:
        return exact_index(vectors)
    try:
        index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        message = str(error).strip().splitlines()[-1]
        raise UserError(f"params.yaml index.factory: faiss cannot build {factory!r} ({message})") from None
    built = faiss.index_cpu_to_all_gpus(index) if gpu else index
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist if "IVF" in factory else 256
        wanted = max(indexing.train_per_list * lists, indexing.train_at_least)
        sample = np.random.default_rng(indexing.seed).permutation(len(vectors))[:wanted]
        built.train(vectors[np.sort(sample)])
    for start in range(0, len(vectors), 1 << 20):
        built.add(vectors[start : start + (1 << 20)])
    return faiss.index_gpu_to_cpu(built) if gpu else built


def set_search_breadth(index, nprobe: int, refine_factor: int) -> None:
    """How far an approximate index looks per query (more: slower and closer to exact): the inverted lists an IVF
    index visits, and for a refining index (`...,Refine(SQ8)`) how many candidates per neighbour asked its finer
    codes re-rank; no-op for an exact index."""
    faiss = faiss_module()
    try:
        faiss.extract_index_ivf(index).nprobe = nprobe
    except RuntimeError:
        pass
    refining = faiss.downcast_index(index)
    if isinstance(refining, faiss.IndexRefine):
        refining.k_factor = refine_factor


def search(index, queries: np.ndarray, k: int, desc: str | None = None):
    """(similarities, positions), each len(queries) × k, nearest first; a position of -1 (with similarity -inf)
    where the index holds fewer than k reachable vectors."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    similarities = np.full((len(queries), k), -np.inf, dtype=np.float32)
    positions = np.full((len(queries), k), -1, dtype=np.int64)
    if index.ntotal == 0 or len(queries) == 0:
        return similarities, positions
    starts = range(0, len(queries), SEARCH_CHUNK)
    for start in tqdm(starts, desc=desc, unit="chunk", leave=False, disable=not desc):
        found_similarities, found = index.search(queries[start : start + SEARCH_CHUNK], k)
        found_similarities[found < 0] = -np.inf
        similarities[start : start + len(found)], positions[start : start + len(found)] = found_similarities, found
    return similarities, positions


def mean_similarity(index, queries: np.ndarray, k: int, desc: str | None = None) -> np.ndarray:
    """Each query's mean similarity to its k nearest vectors of index (0 for an empty index): the non-landmark
    penalty of a query, or the correction of a train image, against the pool."""
    if index.ntotal == 0:
        return np.zeros(len(queries), dtype=np.float32)
    similarities, positions = search(index, queries, min(k, index.ntotal), desc)
    similarities[positions < 0] = 0
    return similarities.mean(axis=1)


def read_embeddings(folder, name: str):
    """One set the embed stage wrote: its rows (id, landmark_id: -1 where none or not known, classifier_landmark,
    classifier_confidence) and its L2-normalised vectors, memory-mapped (GLDv2's 4.1M × 512 are 8 GB)."""
    rows = read_csv(f"{folder}/{name}.csv", ["id", "landmark_id", "classifier_landmark", "classifier_confidence"])
    rows = rows.astype({"landmark_id": np.int64, "classifier_landmark": np.int64, "classifier_confidence": np.float64})
    try:
        vectors = np.load(f"{folder}/{name}.npy", mmap_mode="r")
    except FileNotFoundError:
        raise UserError(f"{folder}/{name}.npy: no such file; run the embed stage (dvc repro)") from None
    if len(vectors) != len(rows):
        raise UserError(f"{folder}/{name}.npy: {len(vectors)} vectors for {len(rows)} rows; rerun the embed stage")
    return rows, vectors


def merged(similarities, positions, k: int):
    """The k nearest of several searches' (similarities, positions), side by side per query: the first search's
    first where similarities tie."""
    similarities, positions = np.concatenate(similarities, axis=1), np.concatenate(positions, axis=1)
    nearest = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarities, nearest, axis=1), np.take_along_axis(positions, nearest, axis=1)


def normalized(vectors) -> np.ndarray:
    """Each row L2-normalised (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def emptied(index):
    """An empty index of the same kind as index (its training, codebooks and search breadth kept), to refill with
    vectors that moved a little (augmented), as every image still sits near where it was trained."""
    faiss = faiss_module()
    try:
        copy = faiss.clone_index(index)
    except RuntimeError:  # a GPU index clones through the CPU
        copy = faiss.index_gpu_to_cpu(index)
    copy.reset()
    return copy


def write_index(index, path) -> None:
    with atomic_path(path) as temporary:
        faiss_module().write_index(index, str(temporary))


def read_index(path, nprobe: int, refine_factor: int, gpu: bool = False):
    """A written index, ready to search: its breadth set (set_search_breadth), on the GPUs when gpu."""
    faiss = faiss_module()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError:
        raise UserError(f"{path}: no readable faiss index; run the index stage (dvc repro)") from None
    set_search_breadth(index, nprobe, refine_factor)
    return faiss.index_cpu_to_all_gpus(index) if gpu else index
