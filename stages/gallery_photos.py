"""Stage gallery_photos: the photos of data.gallery_photos (a folder in the Kaggle layout) packed into
OUT_DIR/train/ (shards and index.csv: id, shard, offset, size, digest, landmark_id, file_size, file_mtime_ns) for
the gallery alone: the embed stages add them to what retrieval searches, and no train stage depends on them, so new
photos and new landmarks are recognised without retraining. Missing and unusable photos are skipped, counted and
listed in OUT_DIR/skipped.csv. OUT_DIR persists: a run packs only what changed (landmark/data/gallery_photos.py).
Usage: python -m stages.gallery_photos PHOTOS_DIR OUT_DIR
"""

import sys

from landmark.data.gallery_photos import update_gallery_photos
from landmark.errors import exits_cleanly
from landmark.settings import load_settings


@exits_cleanly
def main(photos_dir, out_dir):
    settings = load_settings()
    shard_bytes = int(settings.pack.shard_size_mb * 2**20)
    done = update_gallery_photos(photos_dir, out_dir, shard_bytes, settings.filter.max_image_pixels)
    skipped = f", {done.skipped} skipped (listed in {out_dir}/skipped.csv)" if done.skipped else ""
    repacked = "; the shards packed again without the removed photos" if done.repacked else ""
    print(
        f"gallery_photos: {done.listed} photos listed in {photos_dir}/train.csv: {done.packed} packed now, "
        f"{done.kept} as before, {done.removed} removed{skipped}{repacked} -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
