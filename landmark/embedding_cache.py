"""Embeddings kept across runs of the embed stage, found by what they depend on: the image's bytes (the digest the
pack stage records) and the way it was embedded (the model's weights and the looks). Adding photos to a large
gallery then embeds the new photos only; a changed photo, a retrained model or other looks miss, and are embedded
again.

A folder per way of embedding (its fingerprint), holding parts: each a folder of three .npy files, the digests,
the vectors (read as memory maps, so a cache of millions is not loaded whole) and the classifier's answers (class
-1 where the image was embedded for search only, without them). Each run adds one part per set and process; once
a run has finished with its own fingerprint, the folders of the others are removed, so the cache holds one model's
embeddings, not those of every model the project ever trained.
"""

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def fingerprint(trained, looks) -> str:
    """What an embedding depends on besides the image: the trained model (its weights, variant and decoding; not
    its file's bytes, which torch.save stamps anew on every save) and the looks (scales, flip, arithmetic, engine)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(trained.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    described = [trained.variant.model_dump(), trained.decode, list(looks.scales), looks.flip, str(looks.dtype)]
    described += [looks.engine] if looks.engine != "torch" else []  # torch's caches from before the setting stay
    digest.update(json.dumps(described, sort_keys=True).encode())
    return digest.hexdigest()[:32]


class EmbeddingCache:
    """The cached embeddings of one fingerprint, under folder/<fingerprint>/."""

    def __init__(self, folder, fingerprint: str):
        self.root, self.folder = Path(folder), Path(folder) / fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        parts = sorted(path for path in self.folder.glob("part-*") if not path.name.endswith(".partial"))
        self.parts = [np.load(part / "vectors.npy", mmap_mode="r") for part in parts]
        digests = [np.load(part / "digests.npy") for part in parts]
        answers = [np.load(part / "answers.npy") for part in parts]
        self.part_of = np.repeat(np.arange(len(parts)), [len(part) for part in digests])
        self.row_in_part = np.concatenate([np.arange(len(part)) for part in digests]) if parts else np.zeros(0, int)
        self.answers = np.concatenate(answers) if parts else np.zeros((0, 2))
        every = pd.Index(np.concatenate(digests) if parts else np.zeros(0, dtype="U32"))
        latest = ~every.duplicated(keep="last")  # an image embedded again (now with answers) by a later part
        self._rows, self._where = np.flatnonzero(latest), every[latest]

    def __len__(self):
        return len(self._where)

    def find(self, digests, classify: bool) -> np.ndarray:
        """The cache row of each digest, -1 where it has none, or with classify none with the classifier's
        answers (an image embedded for search only is embedded again where a query needs them)."""
        if not len(self):
            return np.full(len(digests), -1)
        found = self._where.get_indexer(pd.Index(np.asarray(digests, dtype=str)))
        rows = np.where(found >= 0, self._rows[np.maximum(found, 0)], -1)
        if classify:
            rows = np.where((rows >= 0) & (self.answers[np.maximum(rows, 0), 0] >= 0), rows, -1)
        return rows

    def take(self, rows) -> tuple:
        """(vectors, classes, confidences) of cache rows."""
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.zeros((len(rows), self.parts[0].shape[1] if self.parts else 0), dtype=np.float32)
        for number, part in enumerate(self.parts):
            mine = np.flatnonzero(self.part_of[rows] == number)
            vectors[mine] = part[self.row_in_part[rows[mine]]]
        answers = self.answers[rows]
        return vectors, answers[:, 0].astype(np.int64), answers[:, 1].astype(np.float32)

    @contextmanager
    def adding(self, digests, dimensions: int, name: str):
        """A new part for the images of digests, in that order: yields (vectors, answers), memory-mapped arrays to
        fill (answers: class and confidence, class -1 without the classifier's); kept once the block ends
        without an error, written beside and renamed, so a killed run leaves no half part. name: unique within a
        run (the set and the process). Nothing to add writes no part: a rerun that found everything leaves the
        cache as it was."""
        if not len(digests):
            yield np.zeros((0, dimensions), np.float32), np.zeros((0, 2))
            return
        final = self.folder / f"part-{len(self.parts):06d}-{name}"  # in the order written: the latest wins
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        np.save(partial / "digests.npy", np.asarray(digests, dtype="U32"))
        shape = (len(digests), dimensions)
        vectors = np.lib.format.open_memmap(partial / "vectors.npy", mode="w+", dtype=np.float32, shape=shape)
        answers = np.lib.format.open_memmap(partial / "answers.npy", mode="w+", dtype=np.float64, shape=(shape[0], 2))
        yield vectors, answers
        vectors.flush()
        answers.flush()
        del vectors, answers
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)

    def drop_others(self) -> None:
        """Remove the folders of every other fingerprint (the embeddings of models no longer used) and any half part
        of a killed run."""
        for other in self.root.iterdir():
            if other.is_dir() and other != self.folder:
                shutil.rmtree(other)
        for partial in self.folder.glob("*.partial"):
            shutil.rmtree(partial)
