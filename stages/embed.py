"""Stage embed@VARIANT: the variant's L2-normalised embeddings, with its classifier's top-1 landmark and confidence
from the same pass, of every image recognition uses, as OUT_DIR/<set>.npy (float32, one row per image) and
OUT_DIR/<set>.csv (id, landmark_id, classifier_landmark, classifier_confidence; a landmark_id of -1: none or
not known here). The sets:

- gallery: every usable train image but the dev set's, the classes the filter dropped included (what is searched)
- dev: the dev set (validation queries, each showing a landmark)
- holdout: the non-landmarks held out for validation (queries that should get no landmark)
- pool: the non-landmark pool that suppression compares against
- test: every packed test image

and OUT_DIR/classes.csv, the classes the variant's classifier learned (landmark_id, images).

Usage: python -m stages.embed MODEL_PT IMAGES_DIR GALLERY_CSV SPLIT_DIR OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.layout import read_csv, read_labels
from landmark.data.shards import packed_ids
from landmark.errors import UserError, exits_cleanly
from landmark.files import atomic_path, write_csv
from landmark.inference import TrainedModel
from landmark.params import load_params
from landmark.runtime import pick_device
from landmark.settings import parse_params


def image_sets(images_dir, gallery_csv, split_dir) -> dict:
    """set name -> (the packed split its images are in, its rows: id, landmark_id)."""
    gallery, dev = read_labels(gallery_csv), read_labels(Path(split_dir) / "dev.csv")
    test_ids = packed_ids(images_dir, "test")
    if test_ids is None:
        raise UserError(f"{images_dir}: not the pack stage's output (no test/index.csv); run dvc repro")

    def unlabelled(ids):
        return pd.DataFrame({"id": ids, "landmark_id": np.full(len(ids), -1, dtype=np.int64)})

    return {
        "gallery": ("train", gallery[~gallery["id"].isin(dev["id"])]),
        "dev": ("train", dev),
        "holdout": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "holdout.csv", ["id"])["id"])),
        "pool": ("nonlandmark", unlabelled(read_csv(Path(split_dir) / "pool.csv", ["id"])["id"])),
        "test": ("test", unlabelled(test_ids)),
    }


def write_set(trained: TrainedModel, images_dir, split, rows: pd.DataFrame, runtime, out_dir, name) -> None:
    """Embed rows' images into out_dir/name.npy (streamed to disk) and name.csv."""
    classes, confidences, written = [], [], 0
    with atomic_path(Path(out_dir) / f"{name}.npy") as temporary:
        shape = (len(rows), trained.embedding_size)
        vectors = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        for embeddings, predicted, confidence in trained.embed(images_dir, split, rows["id"], runtime, desc=name):
            vectors[written : written + len(embeddings)] = embeddings
            written += len(embeddings)
            classes.append(predicted)
            confidences.append(confidence)
        vectors.flush()
        del vectors
    rows = rows.reset_index(drop=True).assign(
        classifier_landmark=trained.labels.landmarks(np.concatenate(classes)) if classes else np.zeros(0, np.int64),
        classifier_confidence=np.concatenate(confidences) if confidences else np.zeros(0),
    )
    write_csv(Path(out_dir) / f"{name}.csv", rows)


@exits_cleanly
def main(model_pt, images_dir, gallery_csv, split_dir, out_dir):
    runtime = parse_params(load_params()).runtime
    trained = TrainedModel.load(model_pt, pick_device(runtime.device))
    learned = pd.DataFrame({"landmark_id": trained.labels.landmark_ids, "images": trained.labels.images})
    write_csv(Path(out_dir) / "classes.csv", learned)
    sets = image_sets(images_dir, gallery_csv, split_dir)
    for name, (split, rows) in sets.items():
        write_set(trained, images_dir, split, rows, runtime, out_dir, name)
    sizes = ", ".join(f"{len(rows)} {name}" for name, (_, rows) in sets.items())
    print(f"embed: {trained.embedding_size}-d embeddings of {sizes} images -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])
