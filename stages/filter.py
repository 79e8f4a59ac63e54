"""Stage filter: keep classes with at least filter.min_samples_per_class usable images; write the label encoding.

Every image of a class large enough to qualify is decoded once here, so training never meets a bad one:
unusable images (missing, empty, corrupt, not an image, too large) are skipped, counted and listed with their
reason in OUT_DIR/bad_images.csv. More than filter.max_bad_fraction of them stops the stage.
Usage: python -m stages.filter RAW_DIR OUT_DIR
"""

import sys
from pathlib import Path

from landmark.data.images import scan
from landmark.data.layout import image_path, read_labels
from landmark.data.prepare import candidate_rows, drop_duplicate_ids, filter_classes
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_csv
from landmark.params import load_params
from landmark.settings import section
from landmark.tracking import log_data_check


@exits_cleanly
def main(raw_dir, out_dir):
    settings = section(load_params(), "filter")
    minimum = settings.min_samples_per_class
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    train, duplicates = drop_duplicate_ids(read_labels(raw_dir / "train.csv"), raw_dir / "train.csv")
    candidates = candidate_rows(train, minimum)
    paths = [image_path(raw_dir, "train", image_id) for image_id in candidates["id"]]
    checked = scan(candidates["id"], paths, settings.max_image_pixels)
    bad = checked.loc[checked["reason"].notna(), ["id", "reason"]]
    bad_list = out_dir / "bad_images.csv"
    write_csv(bad_list, bad)
    log_data_check({"checked_images": len(candidates), "bad_images": len(bad), "duplicate_rows": duplicates}, bad_list)
    if len(candidates) and len(bad) / len(candidates) > settings.max_bad_fraction:
        raise UserError(
            f"{len(bad)} of {len(candidates)} images are unusable, over filter.max_bad_fraction "
            f"({settings.max_bad_fraction}); the list with reasons is in {bad_list}"
        )
    kept, classes = filter_classes(candidates[~candidates["id"].isin(bad["id"])], minimum)
    write_csv(out_dir / "train.csv", kept)
    write_csv(out_dir / "classes.csv", classes)
    reasons = bad["reason"].str.split(" ", n=1).str[0].value_counts().to_dict() if len(bad) else {}
    skipped = f"; skipped {len(bad)} unusable images {reasons} (listed in {bad_list})" if len(bad) else ""
    repeated = f"; dropped {duplicates} repeated rows" if duplicates else ""
    print(
        f"filter: kept {len(classes)} of {train['landmark_id'].nunique()} classes with >= {minimum} usable images, "
        f"{len(kept)} of {len(train)} images{skipped}{repeated}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
