"""Stage pack: the kept train images and the usable test images, packed into tar shards that training,
evaluation and the submission read from (landmark/data/shards.py).

OUT_DIR gets train/ and test/ (shard-*.tar + index.csv), test.csv (every test id: the ones without a usable
image get an empty prediction) and, when the data has one, solution.csv.
Usage: python -m stages.pack RAW_DIR KEPT_TRAIN_CSV OUT_DIR
"""

import shutil
import sys
from pathlib import Path

from landmark.data.images import scan
from landmark.data.layout import image_path, read_csv, read_labels
from landmark.data.shards import pack
from landmark.errors import exits_cleanly
from landmark.files import atomic_path, write_csv
from landmark.params import load_params
from landmark.settings import section


@exits_cleanly
def main(raw_dir, kept_train_csv, out_dir):
    settings = section(load_params(), "pack")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    shard_bytes, seed = int(settings.shard_size_mb * 2**20), settings.seed
    train = pack(raw_dir, "train", read_labels(kept_train_csv), out_dir, shard_bytes, seed)

    test = read_csv(raw_dir / "test.csv", ["id"])[["id"]]
    paths = [image_path(raw_dir, "test", image_id) for image_id in test["id"]]
    usable = scan(test["id"], paths, settings.max_image_pixels)["reason"].isna().to_numpy()
    packed_test = pack(raw_dir, "test", test[usable], out_dir, shard_bytes, seed)
    write_csv(out_dir / "test.csv", test)
    if (raw_dir / "solution.csv").exists():
        with atomic_path(out_dir / "solution.csv") as temporary:
            shutil.copyfile(raw_dir / "solution.csv", temporary)
    print(
        f"pack: {len(train)} train images in {train['shard'].max() + 1} shards, {len(packed_test)} of {len(test)} "
        f"test images in {packed_test['shard'].max() + 1 if len(packed_test) else 0} shards -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
