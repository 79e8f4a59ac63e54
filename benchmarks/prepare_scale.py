"""Filter + split at the real GLDv2 size: 4,132,914 train rows over 203,094 long-tailed classes.

Usage: python benchmarks/prepare_scale.py   (prints seconds for reading train.csv, filter and split)
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes, split_dev

ROWS, CLASSES = 4_132_914, 203_094


def main():
    rng = np.random.default_rng(0)
    # Zipf-like class sizes, as GLDv2's: a few classes with thousands of images, most with a handful.
    weights = 1.0 / np.arange(1, CLASSES + 1) ** 0.9
    labels = rng.choice(CLASSES, size=ROWS, p=weights / weights.sum())
    ids = pd.Series(rng.integers(0, 2**63, ROWS, dtype=np.int64)).map("{:016x}".format)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        pd.DataFrame({"id": ids, "landmark_id": labels}).to_csv(path, index=False)
        started = time.perf_counter()
        train = read_labels(path)
        read = time.perf_counter()
        kept, classes = filter_classes(train, 100)
        filtered = time.perf_counter()
        train_part, dev = split_dev(train, classes["landmark_id"], 0.02, 0.1, seed=0)  # the paper profile's
        done = time.perf_counter()
    print(
        f"prepare at GLDv2 size: read {ROWS:,} rows {read - started:.2f} s, filter (>= 100) {filtered - read:.2f} s "
        f"-> {len(classes):,} classes / {len(kept):,} images, split {done - filtered:.2f} s "
        f"({len(train_part):,} train / {len(dev):,} dev, "
        f"{int((~dev['landmark_id'].isin(classes['landmark_id'])).sum()):,} "
        f"of them below the filter); total {done - started:.2f} s"
    )


if __name__ == "__main__":
    main()
