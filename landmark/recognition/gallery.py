"""What a query is answered from, and what it finds there.

- `Gallery`: a variant's train images as faiss indexes in two parts, `gallery` (every usable train image but the
  dev set's) and `dev` (the dev images). The test set and `landmark predict` search both, so every photo the user
  gave answers; validation searches `gallery` alone, so a dev query never finds itself or another dev image. Beside
  them: the whitening every vector goes through, and the non-landmark pool the suppression steps compare against.
- `Queries`: one set of queries (validation, test, a user's photos): their whitened vectors, the classifier's answer
  and their nearest gallery images.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from landmark.recognition.graph import NeighbourGraphs, keys
from landmark.recognition.search import (
    Whitening,
    chunks,
    emptied,
    mean_similarity,
    merged,
    normalized,
    read_embeddings,
    read_index,
    search,
)

PARTS = ("gallery", "dev")  # searched in this order; a position counts through them one after the other
VALIDATION_PARTS = ("gallery",)


class Gallery:
    """The parts' indexes with their rows (id, landmark_id) and embeddings, the whitening and the pool's index."""

    def __init__(self, whitening: Whitening, parts: dict, pool_index):
        """parts: name -> (faiss index, rows, embeddings), in PARTS order."""
        self.whitening, self.pool_index = whitening, pool_index
        # Augmented: the gallery it was made from, and per image its neighbours there and their weights (-1: an
        # image left as it was), from which its vector is summed again where a step asks for it
        self.base, self.sources = None, None
        self._augmented = {}  # (parts, neighbours, alpha) -> that database-side augmentation of this gallery
        self._nearest = {}  # (part, part searched, k) -> each image's k nearest there (Gallery.nearest_within)
        self.graphs = NeighbourGraphs(None)  # where nearest_within finds what earlier runs found: nowhere
        self._keys = {}  # part -> its images' keys (landmark.recognition.graph.keys)
        self.names = list(parts)
        self.indexes = [index for index, _, _ in parts.values()]
        self.embeddings = [vectors for _, _, vectors in parts.values()]
        sizes = [len(rows) for _, rows, _ in parts.values()]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.ids = np.concatenate([rows["id"].to_numpy(dtype=object) for _, rows, _ in parts.values()])
        self.labels = np.concatenate([rows["landmark_id"].to_numpy(np.int64) for _, rows, _ in parts.values()])
        self._corrections = {}  # pool_neighbours -> each image's own pool similarity, NaN until asked for

    @classmethod
    def load(cls, embeddings_dir, index_dir, nprobe: int, refine_factor: int, gpu: bool = False) -> "Gallery":
        """The index stage's indexes and whitening (index_dir) with the embed stage's rows and vectors."""
        whitening = Whitening.load(Path(index_dir) / "whitening.npz")
        parts = {}
        for name in PARTS:
            rows, vectors = read_embeddings(embeddings_dir, name)
            parts[name] = (read_index(Path(index_dir) / f"{name}.faiss", nprobe, refine_factor, gpu), rows, vectors)
        pool_index = read_index(Path(index_dir) / "pool.faiss", nprobe, refine_factor, gpu)
        return cls(whitening, parts, pool_index)

    def __len__(self):
        return len(self.labels)

    def size(self, parts=PARTS) -> int:
        """How many images the named parts hold."""
        sizes = np.diff(self.offsets)
        return int(sum(sizes[self.names.index(name)] for name in parts))

    def search(self, vectors, k: int, parts=PARTS, desc: str | None = None):
        """(similarities, positions) of the k nearest images of the named parts to each whitened vector, nearest
        first (a position of -1, similarity -inf, where the parts hold fewer than k)."""
        similarities, positions = [], []
        for name in parts:
            part = self.names.index(name)
            found_similarities, found = search(self.indexes[part], vectors, k, desc and f"{desc} ({name})")
            similarities.append(found_similarities)
            positions.append(np.where(found >= 0, found + self.offsets[part], -1))
        return merged(similarities, positions, k)

    def nearest_within(self, name: str, searched: str, k: int):
        """(similarities, positions) of the k nearest images of part `searched` to each image of part `name`, kept
        (n × k): DBA over the gallery (validation) and over the gallery and dev (test) both need the gallery
        searched against itself, the one search here that grows with the square of the data, and share it. What
        an earlier run found is taken from self.graphs where it still holds (landmark.recognition.graph)."""
        key = (name, searched, k)
        if key not in self._nearest:
            self._nearest[key] = self.graphs.nearest(self, name, searched, k)
        return self._nearest[key]

    def search_within(self, name: str, searched: str, k: int, rows):
        """(similarities, positions in part `searched`) of the k nearest images of part `searched` to the images of
        part `name` at rows, searched a chunk of 65,536 vectors at a time."""
        offset = self.offsets[self.names.index(searched)]
        found = [(np.zeros((0, k), np.float32), np.zeros((0, k), np.int64))]
        for chunk in chunks(0, len(rows)):
            similarities, positions = self.search(self.part_vectors(name, rows[chunk]), k, (searched,))
            found.append((similarities, np.where(positions >= 0, positions - offset, -1)))
        return tuple(np.concatenate(arrays) for arrays in zip(*found, strict=True))

    def part_vectors(self, name: str, rows) -> np.ndarray:
        """The whitened vectors of part `name`'s images at rows."""
        return self.vectors_at(np.asarray(rows) + self.offsets[self.names.index(name)])

    def part_keys(self, name: str) -> np.ndarray:
        """Per image of part `name`, its key: its id, its embedding and the whitening, hashed (no vector is
        whitened for it: a run that adds a photo whitens the photo alone)."""
        if name not in self._keys:
            part, salt = self.names.index(name), self.whitening.digest()
            found = [np.zeros(0, np.uint64)]
            for chunk in chunks(0, self.offsets[part + 1] - self.offsets[part], 8_192):  # 8,192 × 2,048 × 8 bytes
                ids = self.ids[self.offsets[part] + chunk.start : self.offsets[part] + chunk.stop]
                found.append(keys(ids, self.embeddings[part][chunk], salt))
            self._keys[name] = np.concatenate(found)
        return self._keys[name]

    def embeddings_at(self, positions) -> np.ndarray:
        """The (unwhitened) embeddings of the images at sorted positions."""
        part = np.searchsorted(self.offsets, positions, side="right") - 1
        rows = [self.embeddings[index][positions[part == index] - self.offsets[index]] for index in np.unique(part)]
        return np.concatenate(rows) if rows else np.zeros((0, self.embeddings[0].shape[1]), np.float32)

    def vectors_at(self, positions) -> np.ndarray:
        """The vectors the indexes hold at positions (any shape; -1: a zero vector), whitened."""
        positions = np.asarray(positions)
        if self.sources is None:
            reached, inverse = np.unique(np.maximum(positions, 0), return_inverse=True)
            vectors = self.whitening(self.embeddings_at(reached))[inverse.reshape(positions.shape)]
        else:
            reached = np.maximum(positions, 0)
            near, weights = self.sources
            summed = near[reached, 0] >= 0  # the images the augmentation made anew: summed, not read from the base
            vectors = self.base.vectors_at(np.where(summed, -1, reached))
            vectors[summed] = augmented_vectors(self.base, near[reached[summed]], weights[reached[summed]])
        vectors[positions < 0] = 0
        return vectors

    def augmented(self, parts, neighbours: int, alpha: float) -> "Gallery":
        """This gallery with database-side augmentation (DBA) over the named parts: each image's vector replaced by
        the L2-normalised sum of its `neighbours` nearest in those parts (itself first), each weighted by its
        similarity to the power alpha (Radenović et al.'s αDBA; smlyaka's GLR 2019 entry). Its neighbours come
        from the parts searched only, so a validation query never reaches a dev image through another's vector.
        Built once per (parts, neighbours, alpha), from each part's search of each (nearest_within, shared between
        augmentations), in indexes of the same kind as these, a chunk of vectors at a time: it keeps each image's
        neighbours and weights (n × neighbours), not its vector (n × d)."""
        key = (tuple(parts), neighbours, alpha)
        if key not in self._augmented:
            near = np.full((len(self), neighbours), -1, dtype=np.int64)
            weights = np.zeros((len(self), neighbours), dtype=np.float32)
            augmented = object.__new__(Gallery)
            augmented.__dict__.update(self.__dict__)
            augmented.indexes = list(self.indexes)
            for name in parts:
                part = self.names.index(name)
                rows = slice(self.offsets[part], self.offsets[part + 1])
                found = [self.nearest_within(name, searched, neighbours) for searched in parts]
                similarities, near[rows] = merged(*zip(*found, strict=True), neighbours)
                weights[rows] = np.where(near[rows] >= 0, np.maximum(similarities, 0), 0) ** alpha
                augmented.indexes[part] = emptied(self.indexes[part])
                for chunk in chunks(rows.start, rows.stop):
                    augmented.indexes[part].add(augmented_vectors(self, near[chunk], weights[chunk]))
            augmented.base, augmented.sources, augmented._augmented, augmented._nearest = self, (near, weights), {}, {}
            augmented.graphs, augmented._keys = NeighbourGraphs(None), {}
            self._augmented[key] = augmented
        return self._augmented[key]

    def pool_similarity(self, vectors, k: int, desc: str | None = None) -> np.ndarray:
        """Each whitened vector's mean similarity to its k nearest photos of the non-landmark pool."""
        return mean_similarity(self.pool_index, vectors, k, desc)

    def correction(self, positions, k: int) -> np.ndarray:
        """Per position (-1: none, 0), the gallery image's own mean similarity to its k nearest pool photos:
        computed once per image, for the images queries reach (all of them at GLDv2 scale would be 4M searches)."""
        known = self._corrections.setdefault(k, np.full(len(self), np.nan))
        reached = np.unique(positions[positions >= 0])
        missing = reached[np.isnan(known[reached])]
        if len(missing):
            vectors = self.whitening(self.embeddings_at(missing))
            known[missing] = self.pool_similarity(vectors, k, desc="pool gallery" if len(missing) > 1000 else None)
        return np.where(positions >= 0, known[np.maximum(positions, 0)], 0.0)


def augmented_vectors(gallery: Gallery, near, weights) -> np.ndarray:
    """αDBA's vector of each image: the L2-normalised sum of its neighbours' vectors (near, -1: none) in gallery,
    each times its weight."""
    return normalized(np.einsum("qk,qkd->qd", weights, gallery.vectors_at(near)))


@dataclass
class Queries:
    """One query set as recognition sees it. stands_for: how many test queries each query stands for (1 for the
    test set's own), for steps that count over a whole set as the test set would (the frequency ban)."""

    gallery: Gallery
    vectors: np.ndarray  # whitened
    classifier_labels: np.ndarray
    classifier_confidences: np.ndarray
    similarities: np.ndarray  # of the nearest gallery images, nearest first
    positions: np.ndarray  # in the gallery; -1: none
    stands_for: np.ndarray
    parts: tuple = PARTS  # the gallery's parts searched
    name: str | None = None  # labels progress bars
    photos: object = None  # the queries' and the gallery's local features (verification.Photos), where extracted
    _pool: dict = field(default_factory=dict, repr=False)
    _nearest: dict = field(default_factory=dict, repr=False)  # gallery -> the widest search of the queries' vectors

    @classmethod
    def find(cls, gallery: Gallery, embeddings, classifier, k: int, parts=PARTS, stands_for=None, name=None, widest=0):
        """The queries of these (unwhitened) embeddings, with the classifier's (labels, probabilities), and their
        k nearest images of the gallery's named parts; stands_for: None, one test query each. name labels the
        progress bars. widest: the most nearest a step will ask of the queries' own vectors (Method.widest), found
        by the same search."""
        vectors = gallery.whitening(embeddings)
        found = gallery.search(vectors, max(k, widest), parts, desc=name and f"search {name}")
        stands_for = np.ones(len(vectors)) if stands_for is None else np.asarray(stands_for, dtype=np.float64)
        classifier = (np.asarray(part) for part in classifier)
        nearest = {gallery: found}
        return cls(gallery, vectors, *classifier, found[0][:, :k], found[1][:, :k], stands_for, tuple(parts), name,
                   _nearest=nearest)  # fmt: skip

    def nearest(self, k: int):
        """(similarities, positions) of the k nearest images to each query's own vector in the parts it searches of
        its gallery: the first k of the widest such search made so far where it reaches k (exact search finds the
        same, an approximate one at least as near), so that the knn votes, αQE and SuperGlobal share one."""
        found = self._nearest.get(self.gallery)
        if found is None or found[0].shape[1] < k:
            found = self._nearest[self.gallery] = self.gallery.search(self.vectors, k, self.parts)
        return found[0][:, :k], found[1][:, :k]

    def __len__(self):
        return len(self.positions)

    @property
    def labels(self) -> np.ndarray:
        """The landmark of each nearest gallery image; -1 where there is none."""
        return np.where(self.positions >= 0, self.gallery.labels[np.maximum(self.positions, 0)], -1)

    def searched_again(self, vectors, gallery: Gallery | None = None) -> "Queries":
        """These queries with their neighbours found anew for other vectors (expanded queries), or in another form
        of the gallery (augmented); the query's own vector stays what the pool is compared with."""
        gallery = gallery or self.gallery
        similarities, positions = gallery.search(vectors, self.similarities.shape[1], self.parts)
        return replace(self, gallery=gallery, similarities=similarities, positions=positions)

    def pool_similarity(self, k: int) -> np.ndarray:
        """Each query's mean similarity to its k nearest pool photos (searched once per k)."""
        if k not in self._pool:
            self._pool[k] = self.gallery.pool_similarity(self.vectors, k)
        return self._pool[k]
