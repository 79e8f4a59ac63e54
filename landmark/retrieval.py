"""Recognition by retrieval, as the Kaggle winners did it since 2019: a query takes the labels of its nearest train
images (faiss), soft-voted by similarity, and non-landmarks are pushed down by what they resemble.

- Index (`build_index`): exact inner product (IndexFlatIP) below a size, an approximate faiss index (a factory
  string such as `IVF4096,SQ8`) from there on; on the embeddings, L2-normalised, inner product is cosine.
- Voting (`vote`): each neighbour votes for its label with its similarity; a label's score is the sum of its
  votes, and the query takes the best label with that score as its confidence (smlyaka, GLR 2019, 3rd place).
  Blending with the classifier adds it as one more voter, weighted by its probability.
- Non-landmark suppression (Henkel & Singer, GLR 2020, 1st place; smlyaka for the ban), on the confidence: the
  query penalty subtracts from each vote of a query its mean similarity to its nearest photos of a non-landmark
  pool; the train correction subtracts from each vote its train image's own mean similarity to the pool (a train
  image that looks like clutter vouches less); the frequency ban sends every label predicted for more than N
  queries to the bottom of the ranking, where the images a non-landmark "hub" class collects sit.

A method is a base (softmax, knn or blend) with suppressions joined by `+`, e.g. `knn+query_penalty+frequency_ban`.
Nothing here imports torch: the index and recognize stages start in a second.
"""

import numpy as np
from tqdm import tqdm

from landmark.data.layout import read_csv
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.settings import parse_method

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
    def fit(cls, vectors, dims: int, shrinkage: float = 0.1, sample: int = 200_000, seed: int = 0) -> "Whitening":
        rows = np.sort(np.random.default_rng(seed).permutation(len(vectors))[:sample])
        learned = np.asarray(vectors[rows], dtype=np.float64)
        mean = learned.mean(axis=0)
        _, singular, axes = np.linalg.svd(learned - mean, full_matrices=False)
        variance = singular**2 / max(1, len(learned))
        keep = slice(0, min(dims, len(variance)))
        projection = axes[keep].T / np.sqrt(variance[keep] + shrinkage * variance.mean())
        return cls(mean.astype(np.float32), projection.astype(np.float32))

    def __call__(self, vectors) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.projection is None:
            return np.ascontiguousarray(vectors)
        whitened = (vectors - self.mean) @ self.projection
        return whitened / np.maximum(np.linalg.norm(whitened, axis=1, keepdims=True), 1e-12)

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


def build_index(vectors: np.ndarray, exact_below: int, factory: str, seed: int = 0, gpu: bool = False):
    """A faiss inner-product index over vectors (n × d float32): exact below exact_below vectors, else the
    factory's approximate index, trained on a seeded sample. Built on the GPU when gpu, returned on the CPU (to
    write it)."""
    faiss = faiss_module()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    if len(vectors) < exact_below:
        index = faiss.IndexFlatIP(dimension)
    else:
        try:
            index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            message = str(error).strip().splitlines()[-1]
            raise UserError(f"params.yaml index.factory: faiss cannot build {factory!r} ({message})") from None
    built = faiss.index_cpu_to_all_gpus(index) if gpu else index
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist if "IVF" in factory else 256
        sample = np.random.default_rng(seed).permutation(len(vectors))[: max(64 * lists, 10_000)]
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


def vote(labels: np.ndarray, weights: np.ndarray):
    """Soft voting: labels and weights are queries × voters (a label of -1 does not vote). Each query gets the
    label with the largest sum of weights, and that sum as its confidence; among equal sums, the label of the
    earlier voter (the nearer neighbour). A query without a voter gets label -1 and confidence -inf."""
    labels, weights = np.asarray(labels, dtype=np.int64), np.asarray(weights, dtype=np.float64)
    chosen = np.full(len(labels), -1, dtype=np.int64)
    confidence = np.full(len(labels), -np.inf)
    chunk = max(1, (1 << 24) // max(1, labels.shape[1] ** 2))  # bounds the queries × voters × voters mask
    for start in range(0, len(labels), chunk):
        part_labels, part_weights = labels[start : start + chunk], weights[start : start + chunk]
        votes = part_labels >= 0
        same = (part_labels[:, :, None] == part_labels[:, None, :]) & votes[:, None, :]
        scores = np.where(votes, (same * np.where(votes, part_weights, 0)[:, None, :]).sum(axis=2), -np.inf)
        best = np.argmax(scores, axis=1)
        rows = np.arange(len(part_labels))
        chosen[start : start + chunk] = np.where(votes.any(axis=1), part_labels[rows, best], -1)
        confidence[start : start + chunk] = scores[rows, best]
    return chosen, confidence


def frequency_ban(labels: np.ndarray, confidences: np.ndarray, max_predictions: int) -> np.ndarray:
    """The confidences with every query whose label is predicted for more than max_predictions queries moved
    below all the others (their order among themselves kept)."""
    confidences = np.asarray(confidences, dtype=np.float64).copy()
    predicted = labels >= 0
    _, inverse, counts = np.unique(labels[predicted], return_inverse=True, return_counts=True)
    banned = np.zeros(len(labels), dtype=bool)
    banned[np.flatnonzero(predicted)] = counts[inverse] > max_predictions
    finite = np.isfinite(confidences)
    if banned.any() and finite.any():
        span = confidences[finite].max() - confidences[finite].min()
        confidences[banned] -= span + 1.0
    return confidences


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


class Neighbours:
    """What recognition needs of a set of queries: their nearest gallery images (similarities, positions,
    labels; nearest first), their non-landmark penalty and the classifier's label and probability."""

    def __init__(self, similarities, positions, gallery_labels, penalty, classifier_labels, classifier_confidences):
        self.similarities, self.positions, self.penalty = similarities, positions, penalty
        self.labels = np.where(positions >= 0, np.asarray(gallery_labels)[np.maximum(positions, 0)], -1)
        self.classifier_labels, self.classifier_confidences = classifier_labels, classifier_confidences

    @classmethod
    def find(cls, vectors, gallery_index, gallery_labels, pool_index, k: int, pool_k: int, classifier, name=None):
        """The k nearest gallery images of each (whitened) query vector and its penalty, its mean similarity to its
        pool_k nearest pool photos; classifier is the queries' (labels, probabilities). name labels the progress."""
        similarities, positions = search(gallery_index, vectors, k, desc=name and f"search {name}")
        penalty = mean_similarity(pool_index, vectors, pool_k, desc=name and f"pool {name}")
        return cls(similarities, positions, gallery_labels, penalty, *classifier)

    def __len__(self):
        return len(self.positions)


def votes(method: str, queries: Neighbours, gallery_penalty, blend_weight: float):
    """(voters, weights, lowered) of a knn or blend method: each query's voting labels (-1: none), their plain
    weights (similarities; the classifier's probability times blend_weight in a blend) and the weights lowered by
    the method's penalties."""
    base, suppressions = parse_method(method)
    voters, weights = queries.labels, queries.similarities.astype(np.float64)
    lowered = weights.copy()
    if "query_penalty" in suppressions:
        lowered -= queries.penalty[:, None]
    if "train_correction" in suppressions:
        lowered -= np.asarray(gallery_penalty)[np.maximum(queries.positions, 0)]
    if base == "blend":
        classifier_votes = blend_weight * queries.classifier_confidences[:, None]
        voters = np.concatenate([voters, queries.classifier_labels[:, None]], axis=1)
        weights, lowered = (np.concatenate([part, classifier_votes], axis=1) for part in (weights, lowered))
    return voters, weights, lowered


def recognize(method: str, queries: Neighbours, gallery_penalty, max_predictions: int, blend_weight: float):
    """(landmark ids, confidences) of the queries by one method (module docstring); a label of -1 is no
    prediction. The label is the soft vote of the plain similarities; the penalties lower its confidence only:
    each of its votes counts its similarity less the query's penalty and less its train image's correction. (Voting
    with the lowered similarities would let a label of one vote beat a label of three once they turn negative.)"""
    base, suppressions = parse_method(method)
    if base == "softmax":
        labels, confidences = queries.classifier_labels, queries.classifier_confidences
    else:
        voters, weights, lowered = votes(method, queries, gallery_penalty, blend_weight)
        labels, _ = vote(voters, weights)
        support = (voters == labels[:, None]) & (voters >= 0)
        confidences = np.where(labels >= 0, (lowered * support).sum(axis=1), -np.inf)
    if "frequency_ban" in suppressions:
        confidences = frequency_ban(labels, confidences, max_predictions)
    return labels, confidences


def ranked_votes(voters, weights, lowered, top_k: int) -> list:
    """Per query, up to top_k (landmark, confidence) in the order of their plain vote, each with its lowered
    sum as the confidence: the runners-up beside what recognize() picks."""
    ranked = []
    for row_voters, row_weights, row_lowered in zip(voters, weights, lowered):
        plain, confidence = {}, {}
        for label, weight, low in zip(row_voters.tolist(), row_weights.tolist(), row_lowered.tolist()):
            if label >= 0:
                plain[label] = plain.get(label, 0.0) + weight
                confidence[label] = confidence.get(label, 0.0) + low
        order = sorted(plain, key=lambda label: -plain[label])[:top_k]  # stable: the nearer voter first among equals
        ranked.append([(label, confidence[label]) for label in order])
    return ranked


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
