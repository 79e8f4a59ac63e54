"""The training loader alone on this machine's CPUs: packed 256-px JPEGs read, decoded and batched by the loader
workers (`decode: worker`), as the train stage feeds a GPU; no model and no device transform. It shows what the
workers cost per image, which on a GPU box decides how many cores are left for the step.

Prints img/s for each of PASSES passes over IMAGES images (after one warm-up pass that starts the workers), with
the cores the main process and the workers used (benchmarks.cpu_use), then the median. The images go to /dev/shm
when it has room, so the figure is not this machine's disk.
Usage: python benchmarks/loader.py [--images 4096] [--workers 2] [--batch 256] [--passes 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.cpu_use import cpu_use, describe  # noqa: E402
from benchmarks.jpegs import scratch_folder, write_jpegs  # noqa: E402
from landmark.data.loading import (
    EpochBatches,  # noqa: E402
    image_dataset,  # noqa: E402
)
from landmark.data.shards import pack  # noqa: E402
from landmark.runtime import make_loader  # noqa: E402


def main(images, workers, batch, passes):
    with scratch_folder(images) as root:
        frame = write_jpegs(root / "raw", images)
        pack(root / "raw", "train", frame, root / "shards", shard_bytes=2**30, seed=0)
        data = image_dataset(256, root / "shards", "train", frame["id"], frame["landmark_id"].to_numpy())
        batches_per_pass = images // batch
        sampler = EpochBatches(len(data), batch, seed=0)
        loader = iter(make_loader(data, batch, workers, torch.device("cpu"), sampler))
        rates = []
        for number in range(passes + 1):
            with cpu_use() as use:
                started = time.perf_counter()
                for _ in range(batches_per_pass):
                    next(loader)
                seconds = time.perf_counter() - started
            rate = batches_per_pass * batch / seconds
            if number:  # the first pass starts the workers
                rates.append(rate)
                print(f"pass {number}: {rate:,.0f} img/s; {describe(use)}", flush=True)
        print(
            f"loader, {workers} workers, batch {batch}, 256-px JPEGs decoded in the workers: "
            f"median {statistics.median(rates):,.0f} img/s over {passes} passes of {batches_per_pass * batch:,} images"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--passes", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.images, arguments.workers, arguments.batch, arguments.passes)
