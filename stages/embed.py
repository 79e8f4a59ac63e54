"""Stage embed@VARIANT: the variant's L2-normalised embeddings, with its classifier's top-1 landmark and confidence
from the same pass, of every image recognition uses, as OUT_DIR/<set>.npy (float32, one row per image) and
OUT_DIR/<set>.csv (id, landmark_id, classifier_landmark, classifier_confidence; a landmark_id of -1: none or
not known here). The sets:

- gallery: every usable train image but the dev set's, the classes the filter dropped included (what is searched)
- dev: the dev set (validation queries, each showing a landmark)
- holdout: the non-landmarks held out for validation (queries that should get no landmark)
- pool: the non-landmark pool that suppression compares against
- test: every packed test image

The classifier answers the queries (dev, holdout, test) only; the sets searched (gallery, pool) have a
classifier_landmark of -1 and a confidence of 0: no step reads them, and at GLDv2 scale the head would cost
4.1M images times the classes it names.

and OUT_DIR/classes.csv, the classes the variant's classifier learned (landmark_id, images), and OUT_DIR/looks.json,
the scales, flip and precision of embed's multi-scale descriptor (landmark predict looks at a user's photos the
same way).

With runtime.gpus above one (or auto on a machine with several GPUs) the stage reruns itself under torchrun, one
process per GPU of this machine, each embedding every world-th image; the first process puts the parts together.
(Embedding needs no other machine: runtime.nodes is for training.)

Usage: python -m stages.embed MODEL_PT IMAGES_DIR GALLERY_CSV SPLIT_DIR OUT_DIR
"""

import os
import shutil
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch.distributed as dist

from landmark.data.layout import read_csv, read_labels
from landmark.data.shards import packed_ids
from landmark.distributed import Ranks, relaunch_under_torchrun, training_processes
from landmark.errors import UserError, exits_cleanly
from landmark.files import atomic_path, write_csv, write_json
from landmark.inference import Looks, TrainedModel
from landmark.runtime import pick_device
from landmark.settings import load_settings


def image_sets(images_dir, gallery_csv, split_dir) -> dict:
    """set name -> (the packed split its images are in, its rows: id, landmark_id, whether its images are queries
    the classifier answers)."""
    gallery, dev = read_labels(gallery_csv), read_labels(Path(split_dir) / "dev.csv")
    test_ids = packed_ids(images_dir, "test")
    if test_ids is None:
        raise UserError(f"{images_dir}: not the pack stage's output (no test/index.csv); run dvc repro")

    def unlabelled(ids):
        return pd.DataFrame({"id": ids, "landmark_id": np.full(len(ids), -1, dtype=np.int64)})

    return {
        "gallery": ("train", gallery[~gallery["id"].isin(dev["id"])], False),
        "dev": ("train", dev, True),
        "holdout": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "holdout.csv", ["id"])["id"]), True),
        "pool": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "pool.csv", ["id"])["id"]), False),
        "test": ("test", unlabelled(test_ids), True),
    }


def write_set(trained: TrainedModel, embedder, split, rows: pd.DataFrame, out_dir, name, classify) -> None:
    """Embed rows' images of the packed split into out_dir/name.npy (streamed to disk) and name.csv, with the
    classifier's answers where classify. embedder: trained.embed with the images, the runtime and the looks bound."""
    classes, confidences, written = [], [], 0
    with atomic_path(Path(out_dir) / f"{name}.npy") as temporary:
        shape = (len(rows), trained.embedding_size)
        vectors = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        embedded = embedder(split, rows["id"], desc=name, classify=classify)
        for embeddings, predicted, confidence in embedded:
            vectors[written : written + len(embeddings)] = embeddings
            written += len(embeddings)
            classes.append(predicted)
            confidences.append(confidence)
        vectors.flush()
        del vectors
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    rows = rows.reset_index(drop=True).assign(
        classifier_landmark=np.where(classes >= 0, trained.labels.landmarks(np.maximum(classes, 0)), -1),
        classifier_confidence=np.concatenate(confidences) if confidences else np.zeros(0),
    )
    write_csv(Path(out_dir) / f"{name}.csv", rows)


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
def main(model_pt, images_dir, gallery_csv, split_dir, out_dir):
    settings = load_settings()
    device = pick_device(settings.runtime.device)
    processes = training_processes(settings.runtime.gpus, device)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(processes, "stages.embed")
    ranks, parts_dir = Ranks(), Path(out_dir) / "parts"
    with ranks.joined(device) as device:
        trained = TrainedModel.load(model_pt, device)
        looked = settings.embed.model_dump(include={"scales", "flip", "precision"})
        looks = Looks.of(looked, device)
        embedder = partial(trained.embed, images_dir, runtime=settings.runtime, looks=looks)
        sets = image_sets(images_dir, gallery_csv, split_dir)
        for name, (split, rows, classify) in sets.items():
            mine = rows.iloc[ranks.my_indices(len(rows))]
            if ranks.world == 1:
                write_set(trained, embedder, split, mine, out_dir, name, classify)
            else:
                write_set(trained, embedder, split, mine, parts_dir, f"{name}.{ranks.rank}", classify)
        if ranks.world > 1:
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
    sizes = ", ".join(f"{len(rows)} {name}" for name, (_, rows, _) in sets.items())
    processes = f" on {ranks.world} processes" if ranks.world > 1 else ""
    counted = f", {looks.count} looks each" if looks.count > 1 else ""
    arithmetic = "bf16" if looks.dtype is not None else "fp32"
    print(
        f"embed: {trained.embedding_size}-d embeddings of {sizes} images{counted}, {arithmetic}{processes} -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
