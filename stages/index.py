"""Stage index@VARIANT: faiss indexes of the variant's train embeddings in two parts, gallery (every usable train
image but the dev set's) and dev (the dev images): validation searches the first, the test set both
(landmark/recognition/gallery.py); and of its non-landmark pool (what suppression compares against). All are
whitened as index.whitening says (learned on the gallery, saved as whitening.npz for the queries). Exact inner
product below index.exact_below vectors, index.factory's approximate index from there on; built on the GPU where
runtime.device allows and faiss-gpu is installed.

Usage: python -m stages.index EMBEDDINGS_DIR OUT_DIR [WHITENING]
WHITENING (none or pca) stands in for index.whitening: an ensemble's descriptors are whitened already.
"""

import sys
import time
from pathlib import Path

from landmark.errors import exits_cleanly
from landmark.recognition.search import Whitening, build_index, read_embeddings, use_gpu, write_index
from landmark.settings import load_settings


@exits_cleanly
def main(embeddings_dir, out_dir, whitening=None):
    settings = load_settings()
    indexing, gpu = settings.index, use_gpu(settings.runtime.device)
    _, gallery = read_embeddings(embeddings_dir, "gallery")
    kind = whitening or indexing.whitening
    whitening = Whitening.fit(gallery, indexing.whitening_dims) if kind == "pca" else Whitening()
    whitening.save(Path(out_dir) / "whitening.npz")
    built = []
    for name in ("gallery", "dev", "pool"):
        started = time.perf_counter()
        vectors = whitening(read_embeddings(embeddings_dir, name)[1])
        index = build_index(vectors, indexing.exact_below, indexing.factory, gpu=gpu)
        write_index(index, Path(out_dir) / f"{name}.faiss")
        kind = "exact" if len(vectors) < indexing.exact_below else indexing.factory
        built.append(f"{name} {index.ntotal} × {vectors.shape[1]} ({kind}, {time.perf_counter() - started:.1f} s)")
    print(f"index: {'; '.join(built)}{' on the GPU' if gpu else ''} -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])
