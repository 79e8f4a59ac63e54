"""Loose JPEGs against packed shards at scale: `dvc status` of a stage that depends on them, and read throughput.

Writes COUNT distinct 256-px JPEGs (default 100,000, ~2 GB) in the Kaggle layout, packs them, then for each form:
- `dvc status` of a DVC stage that depends on the images: first run (hashes everything) and
  second run (DVC's state cache);
- reading every image's bytes in a random order (the training access pattern), in this process;
- the training loader (decode in 2 workers, resize to 64 px) over the first 20,000 in that order.
Page cache is warm for both (the files were just written); the figure is what the file layout costs on top.
Usage: python benchmarks/shards.py [COUNT] [WORKDIR]
"""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.jpegs import write_jpegs  # noqa: E402
from landmark.data.loading import image_dataset  # noqa: E402
from landmark.data.shards import image_reader, pack  # noqa: E402
from landmark.runtime import make_loader  # noqa: E402


def timed(command, cwd):
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def dvc_repo(work: Path, stages: dict) -> None:
    """A DVC repo at work with one stage per (name, folder) that depends on that folder."""
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=work, check=True)
    lines = ["stages:"]
    for name, folder in stages.items():
        lines += [f"  {name}:", f"    cmd: ls {folder} > {name}.txt", f"    deps: [{folder}]"]
    (work / "dvc.yaml").write_text("\n".join(lines) + "\n")


def main(count=100_000, workdir=None):
    count = int(count)
    work = Path(tempfile.mkdtemp(dir=workdir))
    try:
        started = time.perf_counter()
        frame = write_jpegs(work / "raw", count)
        written = time.perf_counter() - started
        started = time.perf_counter()
        index = pack(work / "raw", "train", frame, work / "shards", shard_bytes=2**30, seed=0)
        packed = time.perf_counter() - started
        size = sum(path.stat().st_size for path in (work / "shards/train").glob("*.tar")) / 2**30
        print(
            f"{count:,} JPEGs written in {written:.0f} s; packed in {packed:.0f} s into "
            f"{index['shard'].max() + 1} shard(s), {size:.2f} GiB",
            flush=True,
        )
        order = np.random.default_rng(0).permutation(frame["id"].to_numpy())
        forms = {"loose": work / "raw", "packed": work / "shards"}
        dvc_repo(work, {form: f"{root.name}/train" for form, root in forms.items()})
        for form, root in forms.items():
            first, second = timed(["dvc", "status", form], work), timed(["dvc", "status", form], work)
            reader = image_reader(root, "train", order)
            started = time.perf_counter()
            total = sum(len(reader.read(index)) for index in range(count))
            read_rate = count / (time.perf_counter() - started)
            subset = order[:20_000]
            data = image_dataset(64, root, "train", subset)
            loader = make_loader(data, 256, 2, torch.device("cpu"))
            started = time.perf_counter()
            for _ in loader:
                pass
            loader_rate = len(subset) / (time.perf_counter() - started)
            print(
                f"{form}: dvc status {first:.1f} s first, {second:.1f} s again; random-order read {read_rate:,.0f} "
                f"img/s ({total / 2**20 / count * 1024:.1f} KiB each); loader (2 workers, decode + resize to 64 px) "
                f"{loader_rate:,.0f} img/s",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
