"""Stage embed@VARIANT: the variant's L2-normalised embeddings, with its classifier's top-1 landmark and confidence
from the same pass, of every image recognition uses, as OUT_DIR/<set>.npy (float32, one row per image) and
OUT_DIR/<set>.csv (id, landmark_id, classifier_landmark, classifier_confidence; a landmark_id of -1: none or
not known here). The sets:

- gallery: every usable train image but the dev set's, the classes the filter dropped included, and every photo of
  data.gallery_photos (GALLERY_PHOTOS_DIR, the gallery_photos stage's output): what is searched
- dev: the dev set (validation queries, each showing a landmark)
- holdout: the non-landmarks held out for validation (queries that should get no landmark)
- pool: the non-landmark pool that suppression compares against
- test: every packed test image

The classifier answers the queries (dev, holdout, test) only; the sets searched (gallery, pool) have a
classifier_landmark of -1 and a confidence of 0: no step reads them, and at GLDv2 scale the head would cost
4.1M images times the classes it names.

and OUT_DIR/classes.csv, the classes the variant's classifier learned (landmark_id, images), and OUT_DIR/looks.json,
the scales, flip, precision and engine of embed's multi-scale descriptor (landmark predict looks at a user's photos
the same way).

With runtime.gpus above one (or auto on a machine with several GPUs) the stage reruns itself under torchrun, one
process per GPU of this machine, each embedding every world-th image; the first process puts the parts together.
(Embedding needs no other machine: runtime.nodes is for training.)

Each image's embedding (and the classifier's answers) is kept in CACHE_DIR, found by the image's bytes, the model's
weights and the looks (landmark.embedding_cache): a rerun embeds only the images it has not seen, so photos added to
a large gallery cost their own embedding, not the gallery's. The model's ONNX export (embed.engine onnxruntime) is
kept there too, so a rerun does not export it again.

Usage: python -m stages.embed MODEL_PT IMAGES_DIR GALLERY_PHOTOS_DIR GALLERY_CSV SPLIT_DIR OUT_DIR CACHE_DIR
"""

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from landmark.data.layout import read_csv, read_labels
from landmark.data.shards import INDEX, PackedDigests, packed_ids
from landmark.distributed import Ranks, relaunch_under_torchrun, training_processes
from landmark.embedding_cache import EmbeddingCache, fingerprint
from landmark.errors import UserError, exits_cleanly
from landmark.files import atomic_path, write_csv, write_json
from landmark.inference import Looks, TrainedModel
from landmark.runtime import pick_device
from landmark.settings import load_settings


def image_sets(images_dir, gallery_photos_dir, gallery_csv, split_dir) -> dict:
    """set name -> (the packed split its images are in, its rows: id, landmark_id, whether its images are queries
    the classifier answers)."""
    gallery, dev = read_labels(gallery_csv), read_labels(Path(split_dir) / "dev.csv")
    test_ids = packed_ids(images_dir, "test")
    if test_ids is None:
        raise UserError(f"{images_dir}: not the pack stage's output (no test/index.csv); run dvc repro")
    photos = read_labels(Path(gallery_photos_dir) / "train" / INDEX)
    twice = photos["id"][photos["id"].isin(gallery["id"])]
    if len(twice):
        raise UserError(
            f"data.gallery_photos: photo id {twice.iloc[0]} is a train image's id too ({len(twice)} such); give "
            "the gallery photo another id in its train.csv and file name"
        )

    def unlabelled(ids):
        return pd.DataFrame({"id": ids, "landmark_id": np.full(len(ids), -1, dtype=np.int64)})

    return {
        "gallery": ("train", pd.concat([gallery[~gallery["id"].isin(dev["id"])], photos], ignore_index=True), False),
        "dev": ("train", dev, True),
        "holdout": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "holdout.csv", ["id"])["id"]), True),
        "pool": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "pool.csv", ["id"])["id"]), False),
        "test": ("test", unlabelled(test_ids), True),
    }


@dataclass
class Embedder:
    """A trained model as the stage runs it: `embed`, its TrainedModel.embed with the runtime and the looks bound;
    `cache`, what it embedded in earlier runs; `images`, the folders of the packed images (the pack stage's, the
    gallery photos'), and `digests`, their images' content digests (what the cache finds an image by)."""

    trained: TrainedModel
    embed: Callable
    cache: EmbeddingCache
    images: list
    digests: PackedDigests


def write_set(embedder: Embedder, split, rows: pd.DataFrame, out_dir, name, classify) -> int:
    """Embed rows' images of the packed split into out_dir/name.npy (streamed to disk) and name.csv, with the
    classifier's answers where classify: those the cache holds from its rows, the others embedded now and added
    to it. Returns how many were embedded now."""
    digests = embedder.digests(split, rows["id"])
    cached = embedder.cache.find(digests, classify)
    hits, misses = np.flatnonzero(cached >= 0), np.flatnonzero(cached < 0)
    answers = np.zeros((len(rows), 2))
    with atomic_path(Path(out_dir) / f"{name}.npy") as temporary:
        shape = (len(rows), embedder.trained.embedding_size)
        vectors = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        for chunk in np.array_split(hits, len(hits) // 65536 + 1) if len(hits) else ():  # bounded at any size
            found, classes, confidences = embedder.cache.take(cached[chunk])
            vectors[chunk], answers[chunk, 0], answers[chunk, 1] = found, classes, confidences
        with embedder.cache.adding(digests[misses], shape[1], name) as (new_vectors, new_answers):
            written = 0
            ids = rows["id"].iloc[misses]
            for embeddings, predicted, confidence in embedder.embed(
                embedder.images, split, ids, desc=name, classify=classify
            ):
                done = slice(written, written + len(embeddings))
                vectors[misses[done]] = new_vectors[done] = embeddings
                answers[misses[done]] = new_answers[done] = np.stack([predicted, confidence], axis=1)
                written += len(embeddings)
        vectors.flush()
        del vectors
    classes = answers[:, 0].astype(np.int64) if classify else np.full(len(rows), -1)
    rows = rows.reset_index(drop=True).assign(
        classifier_landmark=np.where(classes >= 0, embedder.trained.labels.landmarks(np.maximum(classes, 0)), -1),
        classifier_confidence=answers[:, 1].astype(np.float32) if classify else np.zeros(len(rows), np.float32),
    )
    write_csv(Path(out_dir) / f"{name}.csv", rows)
    return len(misses)


def put_together(parts_dir, out_dir, name: str, world: int) -> None:
    """out_dir/name.npy and name.csv from the parts of every process: part r holds items r, r + world, …"""
    parts = [np.load(Path(parts_dir) / f"{name}.{rank}.npy", mmap_mode="r") for rank in range(world)]
    rows = [pd.read_csv(Path(parts_dir) / f"{name}.{rank}.csv", dtype={"id": str}) for rank in range(world)]
    total = sum(len(part) for part in parts)
    with atomic_path(Path(out_dir) / f"{name}.npy") as temporary:
        vectors = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(total, parts[0].shape[1]))
        for rank, part in enumerate(parts):
            vectors[rank::world] = part
        vectors.flush()
        del vectors
    order = np.concatenate([np.arange(rank, total, world) for rank in range(world)])
    write_csv(Path(out_dir) / f"{name}.csv", pd.concat(rows, ignore_index=True).iloc[np.argsort(order, kind="stable")])


@exits_cleanly
def main(model_pt, images_dir, gallery_photos_dir, gallery_csv, split_dir, out_dir, cache_dir):
    settings = load_settings()
    device = pick_device(settings.runtime.device)
    processes = training_processes(settings.runtime.gpus, device)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(processes, "stages.embed")
    ranks, parts_dir = Ranks(), Path(out_dir) / "parts"
    with ranks.joined(device) as device:
        trained = TrainedModel.load(model_pt, device)
        looked = settings.embed.model_dump(include={"scales", "flip", "precision", "engine"})
        looks = Looks.of(looked, device)
        cache = EmbeddingCache(cache_dir, fingerprint(trained, looks))
        trained.exports = cache.folder  # ONNX Runtime's export of this model, kept beside its embeddings
        bound = partial(trained.embed, runtime=settings.runtime, looks=looks)
        images = [Path(images_dir), Path(gallery_photos_dir)]
        embedder = Embedder(trained, bound, cache, images, PackedDigests(images))
        sets, embedded = image_sets(images_dir, gallery_photos_dir, gallery_csv, split_dir), 0
        started = time.perf_counter()
        for name, (split, rows, classify) in sets.items():
            mine = rows.iloc[ranks.my_indices(len(rows))]
            if ranks.world == 1:
                embedded += write_set(embedder, split, mine, out_dir, name, classify)
            else:
                embedded += write_set(embedder, split, mine, parts_dir, f"{name}.{ranks.rank}", classify)
        seconds = time.perf_counter() - started
        if ranks.world > 1:
            embedded = int(ranks.cat(torch.tensor([embedded], device=device)).sum())
            dist.barrier()
            if ranks.leader:
                for name in sets:
                    put_together(parts_dir, out_dir, name, ranks.world)
                shutil.rmtree(parts_dir)
    if not ranks.leader:
        return
    learned = pd.DataFrame({"landmark_id": trained.labels.landmark_ids, "images": trained.labels.images})
    write_csv(Path(out_dir) / "classes.csv", learned)
    write_json(Path(out_dir) / "looks.json", looked | {"scales": list(looked["scales"])})
    cache.drop_others()
    sizes = ", ".join(f"{len(rows)} {name}" for name, (_, rows, _) in sets.items())
    processes = f" on {ranks.world} processes" if ranks.world > 1 else ""
    counted = f"{looks.count} looks each, " if looks.count > 1 else ""
    arithmetic = ("bf16" if looks.dtype is not None else "fp32") + f" by {looks.engine}"
    if embedded:  # the sets' embedding alone, the model's loading and the program's start aside
        arithmetic += f", {embedded * looks.count / seconds:.1f} img/s a look"
    total = sum(len(rows) for _, rows, _ in sets.values())
    reused = f"{embedded} embedded now, {total - embedded} found in {cache_dir}"
    print(
        f"embed: {trained.embedding_size}-d embeddings of {sizes} images ({counted}{arithmetic}{processes}; "
        f"{reused}) -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
