"""Each gallery image's nearest images within a part of the gallery (what DBA sums), kept from one run to the next.

Finding them is the one search of recognition that grows with the square of the gallery: 100,000 images searched
against themselves. A run after photos were added to the gallery (data.gallery_photos) or removed from it needs only
what changed: an image and its vector are known by a key (its id, its embedding and the whitening, hashed), and

- an image whose neighbours are all still there keeps them, and only the images added are compared with it;
- an image that is new, whose vector changed, or that lost one of its neighbours is searched for again.

That is the exact search's answer (up to the order of exact ties), at a cost that grows with what changed. The
whitening is learned on the train images alone (stages/index.py), so adding a photo changes no other vector.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from landmark.files import atomic_path
from landmark.recognition.search import chunks, exact_index, merged, search


def keys(ids, vectors, salt: int = 0) -> np.ndarray:
    """One 64-bit key per image, with no Python loop over the images (GLDv2's 4.1M gallery in seconds): its id
    hashed (pandas' siphash), xor its vector's bits weighed by fixed odd 64-bit numbers, summed and hashed, xor
    salt (a digest of what the vectors are read through)."""
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    weights = np.random.default_rng(0).integers(0, 2**64 - 1, bits.shape[1], dtype=np.uint64, endpoint=True)
    weighed = bits @ (weights | np.uint64(1))  # integer arithmetic: wraps modulo 2^64, as a hash should
    return pd.util.hash_array(np.asarray(ids, dtype=object)) ^ pd.util.hash_array(weighed) ^ np.uint64(salt)


class NeighbourGraphs:
    """The neighbour graphs of one recognition's gallery in a folder (recognize's NEIGHBOURS_DIR; None: none kept):
    per (part, part searched, k) the keys of the part's images and of the searched part's, and each image's k
    nearest (similarities; positions in the searched part, -1: none). `writable`: the recognize stage's, which
    saves what it found (save); landmark predict and the served model read them only."""

    def __init__(self, folder=None, writable: bool = False):
        self.folder, self.writable = folder and Path(folder), writable
        self.found = {}  # file name -> the arrays to save
        self.searched = self.kept = 0  # images whose neighbours were searched for, or kept from the last run

    def nearest(self, gallery, name: str, searched: str, k: int):
        """(similarities, positions in the whole gallery) of the k nearest images of part `searched` to each
        image of part `name` (gallery: a landmark.recognition.gallery.Gallery), from what the folder kept where it
        still holds, searched where not."""
        rows, targets = pd.Index(gallery.part_keys(name)), pd.Index(gallery.part_keys(searched))
        similarities = np.full((len(rows), k), -np.inf, dtype=np.float32)
        positions = np.full((len(rows), k), -1, dtype=np.int64)
        kept = self.read(f"{name}-{searched}-{k}.npz")
        stale = np.ones(len(rows), dtype=bool)
        # keys that name one image each, now and in the kept graph (a 64-bit collision is all that could break it)
        unique = kept is not None and all(pd.Index(keys).is_unique for keys in (kept["rows"], kept["targets"]))
        if unique and rows.is_unique and targets.is_unique:
            stale = self.carried_over(kept, (rows, targets), similarities, positions)
            added = np.flatnonzero(~targets.isin(kept["targets"]))
            carried = np.flatnonzero(~stale)
            if len(added) and len(carried):
                exact = exact_index(gallery.part_vectors(searched, added))
                for chunk in chunks(0, len(carried)):
                    at = carried[chunk]
                    found, near = search(exact, gallery.part_vectors(name, at), k)
                    near = np.where(near >= 0, added[np.maximum(near, 0)], -1)
                    similarities[at], positions[at] = merged([similarities[at], found], [positions[at], near], k)
        fresh = np.flatnonzero(stale)
        self.searched, self.kept = self.searched + len(fresh), self.kept + len(rows) - len(fresh)
        if len(fresh):
            similarities[fresh], positions[fresh] = gallery.search_within(name, searched, k, fresh)
        if self.writable:
            self.found[f"{name}-{searched}-{k}.npz"] = {
                "rows": rows.to_numpy(), "targets": targets.to_numpy(), "similarities": similarities,
                "positions": positions,
            }  # fmt: skip
        offset = gallery.offsets[gallery.names.index(searched)]
        return similarities, np.where(positions >= 0, positions + offset, -1)

    @staticmethod
    def carried_over(kept, keys, similarities, positions) -> np.ndarray:
        """Fill similarities and positions (in the searched part) of the images whose kept neighbours are all still
        there; returns which images must be searched again (new, changed, or one of their neighbours gone)."""
        rows, targets = keys  # pd.Index each
        was = pd.Index(kept["rows"]).get_indexer(rows)
        moved = targets.get_indexer(kept["targets"])  # each kept target's position now; -1: gone
        near = kept["positions"][np.maximum(was, 0)]
        now = np.where(near >= 0, moved[np.maximum(near, 0)], -1)
        lost = ((near >= 0) & (now < 0)).any(axis=1)
        stale = (was < 0) | lost
        carried = ~stale
        similarities[carried], positions[carried] = kept["similarities"][was[carried]], now[carried]
        return stale

    def summary(self) -> str:
        """What nearest() took from the last run (empty where it was not asked)."""
        if not self.searched + self.kept:
            return ""
        return f"DBA's neighbours: {self.searched} images searched, {self.kept} kept from the last run"

    def read(self, file_name: str):
        path = self.folder and self.folder / file_name
        if path is None or not path.is_file():
            return None
        with np.load(path) as kept:
            return {key: kept[key] for key in kept.files}

    def save(self) -> None:
        """Write what this run found, and remove the graphs it no longer asked for."""
        if not (self.folder and self.writable):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for file_name, arrays in self.found.items():
            with atomic_path(self.folder / file_name) as temporary, open(temporary, "wb") as handle:
                np.savez(handle, **arrays)
        for path in self.folder.glob("*.npz"):
            if path.name not in self.found:
                path.unlink()
