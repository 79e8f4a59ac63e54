"""Stage split: a seeded dev set from every class with two images or more (landmark/data/prepare.py: the filter's
classes by split.dev_fraction, a split.tail_dev_fraction share of the smaller ones one image each), the kept
classes' other images to train on, and the non-landmark pool cut into the part suppression searches (pool.csv)
and the part held out for validation (holdout.csv); records the sizes. A part the settings promise (see
landmark.settings.nonlandmark_shortfalls) that comes out empty stops the stage: no step may run on nothing.

Usage: python -m stages.split GALLERY_CSV CLASSES_CSV NONLANDMARK_CSV OUT_DIR SIZES_JSON
"""

import sys
from pathlib import Path

from landmark.data.layout import read_csv, read_labels
from landmark.data.prepare import split_dev, split_pool
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_csv, write_json
from landmark.settings import load_settings, nonlandmark_shortfalls


@exits_cleanly
def main(gallery_csv, classes_csv, nonlandmark_csv, out_dir, sizes_json):
    settings = load_settings()
    split = settings.split
    kept = read_csv(classes_csv, ["landmark_id"])["landmark_id"].astype("int64").to_numpy()
    train, dev = split_dev(read_labels(gallery_csv), kept, split.dev_fraction, split.tail_dev_fraction, split.seed)
    pool, holdout = split_pool(read_csv(nonlandmark_csv, ["id"])[["id"]], split.holdout_fraction, split.seed)
    promised = {"pool", "holdout"} - set(nonlandmark_shortfalls(settings.data, split))
    empty = [name for name, part in (("pool", pool), ("holdout", holdout)) if name in promised and not len(part)]
    if empty and not len(pool) + len(holdout):
        raise UserError("data.nonlandmarks: the non-landmark pool holds no usable photo; add photos to it")
    if empty:
        raise UserError(
            f"split.holdout_fraction: {split.holdout_fraction} of {len(pool) + len(holdout)} usable non-landmark "
            f"photos leaves the {'searched pool' if 'pool' in empty else 'held-out part'} empty; add photos to the "
            "pool (data.nonlandmarks)"
        )
    for name, frame in (("train", train), ("dev", dev), ("pool", pool), ("holdout", holdout)):
        write_csv(Path(out_dir) / f"{name}.csv", frame)
    tail = ~dev["landmark_id"].isin(kept)
    sizes = {
        "train_images": len(train),
        "classes": int(train["landmark_id"].nunique()),
        "dev_images": len(dev),
        "dev_classes": int(dev["landmark_id"].nunique()),
        "dev_images_below_the_filter": int(tail.sum()),
        "pool_images": len(pool),
        "holdout_images": len(holdout),
    }
    write_json(sizes_json, sizes)
    print(
        f"split: {sizes['train_images']} train images over {sizes['classes']} classes; {len(dev)} dev images of "
        f"{sizes['dev_classes']} classes, {int(tail.sum())} of them below the filter; non-landmarks: {len(pool)} in "
        f"the pool, {len(holdout)} held out for validation"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
