"""Stage filter: keep classes with at least filter.min_samples_per_class usable images; write the label encoding.

Every train image and every photo of the non-landmark pool is decoded once here, so no later stage meets a bad
one: unusable images (missing, empty, corrupt, not an image, too large) are skipped, counted and listed with
their reason in OUT_DIR/bad_images.csv. More than filter.max_bad_fraction of them stops the stage.
OUT_DIR gets train.csv (the kept classes' images, what the classifiers train on), classes.csv (their label
encoding), gallery.csv (every usable train image, the small classes too: what retrieval searches) and
nonlandmark.csv (the usable photos of the pool; none when the data has no pool).
Usage: python -m stages.filter RAW_DIR OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.images import scan
from landmark.data.layout import read_csv, read_labels
from landmark.data.prepare import drop_duplicate_ids, filter_classes
from landmark.data.shards import image_reader
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_csv
from landmark.settings import load_settings
from landmark.tracking import log_data_check


@exits_cleanly
def main(raw_dir, out_dir):
    settings = load_settings().filter
    minimum = settings.min_samples_per_class
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    train, duplicates = drop_duplicate_ids(read_labels(raw_dir / "train.csv"), raw_dir / "train.csv")
    pool_csv = raw_dir / "nonlandmark.csv"
    pool = read_csv(pool_csv, ["id"])[["id"]].drop_duplicates() if pool_csv.exists() else pd.DataFrame({"id": []})
    checked = pd.concat(
        [
            scan(frame["id"], image_reader(raw_dir, split, frame["id"], missing_ok=True), settings.max_image_pixels)
            for split, frame in (("train", train), ("nonlandmark", pool))
        ],
        ignore_index=True,
    )
    checked.insert(1, "split", np.repeat(["train", "nonlandmark"], [len(train), len(pool)]))
    bad = checked.loc[checked["reason"].notna(), ["id", "split", "reason"]]
    bad_list = out_dir / "bad_images.csv"
    write_csv(bad_list, bad)
    log_data_check({"checked_images": len(checked), "bad_images": len(bad), "duplicate_rows": duplicates}, bad_list)
    if len(checked) and len(bad) / len(checked) > settings.max_bad_fraction:
        raise UserError(
            f"{len(bad)} of {len(checked)} images are unusable, over filter.max_bad_fraction "
            f"({settings.max_bad_fraction}); the list with reasons is in {bad_list}"
        )
    usable_pool = pool[~pool["id"].isin(bad.loc[bad["split"] == "nonlandmark", "id"])]
    if len(pool) and not len(usable_pool):
        raise UserError(
            f"none of the {len(pool)} photos of the non-landmark pool is usable (reasons in {bad_list}); "
            "point data.nonlandmarks at a folder of readable photos"
        )
    gallery = train[~train["id"].isin(bad.loc[bad["split"] == "train", "id"])]
    kept, classes = filter_classes(gallery, minimum)
    write_csv(out_dir / "train.csv", kept)
    write_csv(out_dir / "classes.csv", classes)
    write_csv(out_dir / "gallery.csv", gallery)
    write_csv(out_dir / "nonlandmark.csv", usable_pool)
    reasons = bad["reason"].str.split(" ", n=1).str[0].value_counts().to_dict() if len(bad) else {}
    skipped = f"; skipped {len(bad)} unusable images {reasons} (listed in {bad_list})" if len(bad) else ""
    repeated = f"; dropped {duplicates} repeated rows" if duplicates else ""
    print(
        f"filter: kept {len(classes)} of {train['landmark_id'].nunique()} classes with >= {minimum} usable images, "
        f"{len(kept)} of {len(train)} images{skipped}{repeated}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
