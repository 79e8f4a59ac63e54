"""Stage index@VARIANT: faiss indexes of the variant's train embeddings in two parts, gallery (every usable train
image but the dev set's, and the gallery photos) and dev (the dev images): validation searches the first, the test
set both (landmark/recognition/gallery.py); and of its non-landmark pool (what suppression compares against). All
are whitened as index.whitening says, saved as whitening.npz for the queries: learned on the gallery's train images
alone, not on the gallery photos (GALLERY_PHOTOS_DIR, the gallery_photos stage's output), so that photos added or
removed leave every other image's vector as it was, and what recognize kept of their neighbours still holds. Exact
inner product below index.exact_below vectors, index.factory's approximate index from there on; built on the GPU
where runtime.device allows and faiss-gpu is installed.

Usage: python -m stages.index EMBEDDINGS_DIR OUT_DIR (GALLERY_PHOTOS_DIR | --unwhitened)
--unwhitened: no whitening, whatever index.whitening says: an ensemble's descriptors are whitened already.
"""

import sys
import time
from pathlib import Path

import numpy as np

from landmark.data.layout import read_csv
from landmark.data.shards import INDEX
from landmark.errors import exits_cleanly
from landmark.recognition.search import Whitening, build_index, read_embeddings, use_gpu, write_index
from landmark.settings import Index, load_settings


def learned_whitening(embeddings_dir, gallery_photos_dir, indexing: Index) -> Whitening:
    """The whitening of index.whitening, learned on the gallery's rows that are train images."""
    if indexing.whitening != "pca":
        return Whitening()
    rows, gallery = read_embeddings(embeddings_dir, "gallery")
    photos = read_csv(Path(gallery_photos_dir) / "train" / INDEX, ["id"])["id"]
    train_images = np.flatnonzero(~rows["id"].isin(photos).to_numpy())
    return Whitening.fit(
        gallery, indexing.whitening_dims, train_images, shrinkage=indexing.whitening_shrinkage,
        sample=indexing.whitening_sample, seed=indexing.seed,
    )  # fmt: skip


@exits_cleanly
def main(embeddings_dir, out_dir, gallery_photos_dir):
    settings = load_settings()
    indexing, gpu = settings.index, use_gpu(settings.runtime.device)
    if gallery_photos_dir == "--unwhitened":
        whitening = Whitening()
    else:
        whitening = learned_whitening(embeddings_dir, gallery_photos_dir, indexing)
    whitening.save(Path(out_dir) / "whitening.npz")
    built = []
    for name in ("gallery", "dev", "pool"):
        started = time.perf_counter()
        vectors = whitening(read_embeddings(embeddings_dir, name)[1])
        index = build_index(vectors, indexing, gpu=gpu)
        write_index(index, Path(out_dir) / f"{name}.faiss")
        kind = "exact" if len(vectors) < indexing.exact_below else indexing.factory
        built.append(f"{name} {index.ntotal} × {vectors.shape[1]} ({kind}, {time.perf_counter() - started:.1f} s)")
    print(f"index: {'; '.join(built)}{' on the GPU' if gpu else ''} -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])
