"""Stage filter: keep classes with at least filter.min_samples_per_class images; write the label encoding."""

import sys
from pathlib import Path

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes
from landmark.errors import exits_cleanly
from landmark.files import write_csv
from landmark.params import load_params, section


@exits_cleanly
def main(train_csv, out_dir):
    minimum = int(section(load_params(), "filter", "min_samples_per_class"))
    train = read_labels(train_csv)
    kept, classes = filter_classes(train, minimum)
    write_csv(Path(out_dir) / "train.csv", kept)
    write_csv(Path(out_dir) / "classes.csv", classes)
    print(
        f"filter: kept {len(classes)} of {train['landmark_id'].nunique()} classes with >= {minimum} images, "
        f"{len(kept)} of {len(train)} images"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
