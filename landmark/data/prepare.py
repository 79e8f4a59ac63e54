"""Filter classes by size, as the paper did (classes with ≥ 100 images), and split a seeded dev set from every
class with two images or more, the long tail included. Vectorised, so the real 4.13M-row train.csv takes seconds."""

import numpy as np
import pandas as pd

from landmark.data.layout import line_of_row
from landmark.errors import UserError


def filter_classes(train: pd.DataFrame, min_samples_per_class: int):
    """Keep classes with at least `min_samples_per_class` images.

    Returns the kept rows and the label encoding (landmark_id, class_index, images), class_index in landmark order.
    """
    counts = train["landmark_id"].value_counts()
    kept_counts = counts[counts >= min_samples_per_class].sort_index()
    classes = pd.DataFrame(
        {
            "landmark_id": kept_counts.index.to_numpy(np.int64),
            "class_index": np.arange(len(kept_counts)),
            "images": kept_counts.to_numpy(np.int64),
        }
    )
    return train[train["landmark_id"].isin(kept_counts.index)], classes


def split_dev(gallery: pd.DataFrame, kept_classes, dev_fraction: float, tail_dev_fraction: float, seed: int):
    """The dev set, drawn at random to look like the test set's landmarks: from each class of kept_classes (the
    filter's), round(dev_fraction · n) of its n images, at least one while dev_fraction is above 0; from a
    tail_dev_fraction share of the other classes with two images or more (the long tail, which only retrieval can
    name), one image each; never a class's last image. Returns (train: the kept classes' other images, dev).

    gallery: every usable train image (id, landmark_id). Rows keep their file order within each part.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(gallery))
    labels = gallery["landmark_id"].to_numpy()[order]
    rank_in_class = pd.Series(labels).groupby(labels).cumcount().to_numpy()
    sizes = gallery["landmark_id"].value_counts()
    class_size = sizes.reindex(labels).to_numpy()
    kept = np.isin(labels, np.asarray(kept_classes))
    tail = sizes[(sizes >= 2) & ~sizes.index.isin(kept_classes)].index.sort_values()
    chosen = tail[rng.permutation(len(tail))[: int(round(len(tail) * tail_dev_fraction))]]
    quota = np.where(kept, np.maximum(np.round(class_size * dev_fraction), dev_fraction > 0), np.isin(labels, chosen))
    is_dev = np.zeros(len(gallery), dtype=bool)
    is_dev[order] = rank_in_class < np.minimum(quota, class_size - 1)
    return gallery[~is_dev & np.isin(gallery["landmark_id"], kept_classes)], gallery[is_dev]


def drop_duplicate_ids(train: pd.DataFrame, path):
    """Drop repeated rows of the same id and label (a counted skip); the same id under two labels is an error
    naming the line, since no rule can tell which label is right."""
    repeated = train["id"].duplicated(keep="first")
    conflicting = repeated & ~train.duplicated(["id", "landmark_id"], keep="first")
    if conflicting.any():
        row = int(conflicting.to_numpy().argmax())
        image_id = train["id"].iloc[row]
        raise UserError(
            f"{path}:{line_of_row(path, row)}: id {image_id} appears again with another landmark_id; "
            "keep one row per image"
        )
    return train[~repeated], int(repeated.sum())


def split_pool(pool: pd.DataFrame, holdout_fraction: float, seed: int):
    """The non-landmark pool cut in two at random: (the pool suppression searches, the photos held out for
    validation). The held-out ones stand in for the test set's non-landmarks when a recognition method is chosen,
    so none of them may be in the pool it is scored against."""
    is_holdout = np.zeros(len(pool), dtype=bool)
    is_holdout[np.random.default_rng(seed).permutation(len(pool))[: int(round(len(pool) * holdout_fraction))]] = True
    return pool[~is_holdout], pool[is_holdout]
