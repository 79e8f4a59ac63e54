"""Stage split: a seeded, stratified dev split of the filtered training data, and the non-landmark pool cut into
the part suppression searches (pool.csv) and the part held out for validation (holdout.csv); records the sizes.

Usage: python -m stages.split FILTERED_TRAIN_CSV NONLANDMARK_CSV OUT_DIR SIZES_JSON
"""

import sys
from pathlib import Path

from landmark.data.layout import read_csv, read_labels
from landmark.data.prepare import split_dev, split_pool
from landmark.errors import exits_cleanly
from landmark.files import write_csv, write_json
from landmark.params import load_params
from landmark.settings import section


@exits_cleanly
def main(filtered_csv, nonlandmark_csv, out_dir, sizes_json):
    settings = section(load_params(), "split")
    train, dev = split_dev(read_labels(filtered_csv), settings.dev_fraction, settings.seed)
    pool, holdout = split_pool(read_csv(nonlandmark_csv, ["id"])[["id"]], settings.holdout_fraction, settings.seed)
    for name, frame in (("train", train), ("dev", dev), ("pool", pool), ("holdout", holdout)):
        write_csv(Path(out_dir) / f"{name}.csv", frame)
    sizes = {
        "train_images": len(train),
        "dev_images": len(dev),
        "classes": int(train["landmark_id"].nunique()),
        "pool_images": len(pool),
        "holdout_images": len(holdout),
    }
    write_json(sizes_json, sizes)
    print(
        f"split: {sizes['train_images']} train and {sizes['dev_images']} dev images over {sizes['classes']} classes; "
        f"non-landmarks: {len(pool)} in the pool, {len(holdout)} held out for validation"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
