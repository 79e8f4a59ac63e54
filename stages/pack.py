"""Stage pack: the usable train images (every class: retrieval searches the small ones too), the non-landmark
pool and the usable test images, packed into tar shards that every later stage reads from
(landmark/data/shards.py).

OUT_DIR gets train/, nonlandmark/ and test/ (shard-*.tar + index.csv), test.csv (every test id: the ones without
a usable image get an empty prediction) and, when the data has one, solution.csv.
Usage: python -m stages.pack RAW_DIR GALLERY_CSV NONLANDMARK_CSV OUT_DIR
"""

import shutil
import sys
from pathlib import Path

from landmark.data.images import scan
from landmark.data.layout import read_csv, read_labels
from landmark.data.shards import image_reader, pack
from landmark.errors import exits_cleanly
from landmark.files import atomic_path, write_csv
from landmark.settings import load_settings


@exits_cleanly
def main(raw_dir, gallery_csv, nonlandmark_csv, out_dir):
    settings = load_settings().pack
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    shard_bytes, seed = int(settings.shard_size_mb * 2**20), settings.seed
    train = pack(raw_dir, "train", read_labels(gallery_csv), out_dir, shard_bytes, seed)
    pool = pack(raw_dir, "nonlandmark", read_csv(nonlandmark_csv, ["id"])[["id"]], out_dir, shard_bytes, seed)

    test = read_csv(raw_dir / "test.csv", ["id"])[["id"]]
    readable = image_reader(raw_dir, "test", test["id"], missing_ok=True)  # a test image may not have arrived
    usable = scan(test["id"], readable, settings.max_image_pixels)["reason"].isna().to_numpy()
    packed_test = pack(raw_dir, "test", test[usable], out_dir, shard_bytes, seed)
    write_csv(out_dir / "test.csv", test)
    if (raw_dir / "solution.csv").exists():
        with atomic_path(out_dir / "solution.csv") as temporary:
            shutil.copyfile(raw_dir / "solution.csv", temporary)
    shards = {
        name: index["shard"].max() + 1 if len(index) else 0 for name, index in (("train", train), ("test", packed_test))
    }
    print(
        f"pack: {len(train)} train images in {shards['train']} shards, {len(pool)} non-landmark photos, "
        f"{len(packed_test)} of {len(test)} test images in {shards['test']} shards -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
