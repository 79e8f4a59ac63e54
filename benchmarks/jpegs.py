"""Many distinct JPEGs fast, in the Kaggle layout, for the throughput benchmarks (not a training set: the pixels
are smooth noise, sized like GLDv2's 256-px files)."""

import contextlib
import io
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from landmark.data.layout import image_path


def _encode(job):
    seed, size = job
    rng = np.random.default_rng(seed)
    # Coarse noise blown up with bicubic: JPEG sizes near real photos' (~20 KB at 256 px), unlike raw noise.
    small = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.resize((size, size), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_jpegs(root, count: int, size: int = 256, classes: int = 100, workers: int | None = None) -> pd.DataFrame:
    """Write `count` JPEGs under root/train/ and root/train.csv; returns the (id, landmark_id) frame."""
    ids = [f"{number:016x}" for number in range(count)]
    frame = pd.DataFrame({"id": ids, "landmark_id": np.arange(count) % classes})
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for image_id, data in zip(
            ids, pool.map(_encode, ((n, size) for n in range(count)), chunksize=256), strict=True
        ):
            path = image_path(root, "train", image_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    frame.to_csv(f"{root}/train.csv", index=False)
    return frame


@contextlib.contextmanager
def scratch_folder(images: int):
    """A throw-away folder for `images` such JPEGs and their shards: in /dev/shm when it has room, so a timing over
    them is not one of this machine's disk."""
    in_memory = Path("/dev/shm").is_dir() and shutil.disk_usage("/dev/shm").free > images * 200_000
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if in_memory else None))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
