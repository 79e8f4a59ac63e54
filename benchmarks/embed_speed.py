"""The embed stage's CPU inference, one look at 224 px, by each way of running the model: img/s and how far its
embeddings are from eager fp32's (issue #34, item 1: which lever pays on a laptop, and stays exact enough).

Usage: python benchmarks/embed_speed.py [--variant recipe_lite0_pretrained] [--size 224] [--batch 32]
                                        [--rounds 5] [--threads N] [--stage REPO]

The variant as profiles/photos.yaml sets it, built with random weights (the speed and the differences do not
depend on them), run as `landmark.inference.embed` runs it: forward_features, forward_head(pre_logits), L2-norm.
Ways, measured in turns (each round times every way once, so a noisy machine shifts them alike):
  eager          fp32, channels-first
  channels_last  fp32, channels_last input and weights (what the embed stage does today)
  compiled       torch.compile (inductor's C++ backend) of the channels_last model
  bf16           bf16 autocast on the CPU, channels_last
Prints per way the median img/s over the rounds, its ratio to channels_last, and the largest 1 − cosine between
its embeddings and eager fp32's over the batch.

With --stage REPO (a finished run of the photos profile, e.g. benchmarks/photos_profile.py's) it times the embed
stage itself instead, as `dvc repro` runs it, on that run's photos and model (--variant): one look at 224 px
(scales [1], no flip), by torch in fp32 (before), by torch in bf16 and by ONNX Runtime in fp32 (embed.engine), in
turns, each with an empty embedding cache; img/s is every image of the five sets over the stage's wall time, and
the stage's own figure over its embedding alone (the program's start and the model's loading aside). The
repository's code runs: a run made before embed.engine needs this checkout's landmark/ and stages/ copied in.
"""

import argparse
import copy
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).parents[1]))

from landmark.models import create_model  # noqa: E402
from landmark.runtime import compile_problem  # noqa: E402
from landmark.settings import load_settings  # noqa: E402

ROOT = Path(__file__).parents[1]


def photos_variant(name: str, size: int):
    """The variant as the photos profile gives it (its image size), with no weights to download."""
    settings = load_settings(ROOT / "params.yaml")
    profile = yaml.safe_load((ROOT / "profiles/photos.yaml").read_text())["variants"].get(name) or {}
    return settings.variants[name].model_copy(update=profile | {"image_size": size, "pretrained": "none"})


def embedder(model, autocast: bool):
    def run(images):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            embedding = model.forward_head(model.forward_features(images), pre_logits=True).float()
        return F.normalize(embedding, dim=1)

    return run


def stage_speed(repo: Path, variant: str, rounds: int) -> None:
    """The embed stage's img/s in repo for each way of running the model, in turns (module docstring)."""
    from dvc.utils.hydra import apply_overrides

    params, original = repo / "params.yaml", (repo / "params.yaml").read_text()
    ways = {
        "torch fp32": ["embed.precision=fp32", "embed.engine=torch"],
        "torch bf16": ["embed.precision=bf16", "embed.engine=torch"],
        "onnxruntime fp32": ["embed.precision=fp32", "embed.engine=onnxruntime"],
    }
    speeds, scratch = {way: [] for way in ways}, Path(tempfile.mkdtemp())
    looking = {way: [] for way in ways}  # the stage's own figure: its embedding alone, start and model load aside
    command = [
        sys.executable, "-m", "stages.embed", f"models/{variant}/model.pt", "data/shards", "data/gallery_photos",
        "data/filtered/gallery.csv", "data/split", str(scratch / "out"), str(scratch / "cache"),
    ]  # fmt: skip
    try:
        for _ in range(rounds):
            for way, overrides in ways.items():
                params.write_text(original)
                apply_overrides(params, ["embed.scales=[1]", "embed.flip=false", *overrides])
                shutil.rmtree(scratch / "cache", ignore_errors=True)
                started = time.perf_counter()
                result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True)
                seconds = time.perf_counter() - started
                images = sum(int(count) for count in re.findall(r"(\d+) embedded now, (\d+)", result.stdout)[0])
                speeds[way].append(images / seconds)
                looking[way].append(float(re.findall(r"([\d.]+) img/s a look", result.stdout)[0]))
                print(f"{way}: {images} images in {seconds:.1f} s, {images / seconds:.1f} img/s "
                      f"({looking[way][-1]:.1f} img/s a look in its embedding)", file=sys.stderr)  # fmt: skip
    finally:
        params.write_text(original)
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {way: statistics.median(found) for way, found in speeds.items()}
    inner = {way: statistics.median(found) for way, found in looking.items()}
    print(f"the embed stage, {variant} in {repo}, one look, medians of {rounds} rounds in turns:")
    for way, speed in medians.items():
        print(f"{way}: {speed:.1f} img/s over the stage's wall time, {speed / medians['torch fp32']:.2f}x torch fp32; "
              f"{inner[way]:.1f} img/s a look in its embedding, {inner[way] / inner['torch fp32']:.2f}x")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="recipe_lite0_pretrained")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--stage", type=Path, help="time the embed stage in this finished photos-profile run")
    args = parser.parse_args()
    if args.stage:
        stage_speed(args.stage, args.variant, args.rounds)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(photos_variant(args.variant, args.size), 1000).eval()
    images = torch.rand(args.batch, 3, args.size, args.size)
    last = images.contiguous(memory_format=torch.channels_last)
    nchw = embedder(model, autocast=False)
    reference = nchw(images)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    ways = {
        "eager": (nchw, images),
        "channels_last": (embedder(fast, False), last),
        "bf16": (embedder(fast, True), last),
    }
    problem = compile_problem(torch.device("cpu"))
    if problem:
        print(f"torch.compile left out: it cannot build kernels here ({problem})", file=sys.stderr)
    else:
        started = time.perf_counter()
        ways["compiled"] = (embedder(torch.compile(fast), autocast=False), last)
        ways["compiled"][0](last)  # compiles (inductor's cache may hold it from an earlier run)
        print(f"torch.compile: {time.perf_counter() - started:.0f} s to compile", file=sys.stderr)
    speeds = {name: [] for name in ways}
    gaps = {}
    for _ in range(args.rounds):
        for name, (run, batch) in ways.items():
            run(batch)  # warm: the first call of a layout allocates
            started = time.perf_counter()
            embeddings = run(batch)
            speeds[name].append(args.batch / (time.perf_counter() - started))
            gaps[name] = float((1 - (embeddings * reference).sum(dim=1)).max())
    base = statistics.median(speeds["channels_last"])
    print(f"{args.variant} at {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, one look")
    print("| way | img/s (median of rounds) | vs channels_last | largest 1 − cosine to eager fp32 |")
    print("|---|---|---|---|")
    for name, measured in speeds.items():
        median = statistics.median(measured)
        print(f"| {name} | {median:.1f} | {median / base:.2f}× | {gaps[name]:.1e} |")


if __name__ == "__main__":
    main()
