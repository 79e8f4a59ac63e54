"""The GPU check of issue #5 in one run (about 5 minutes on one H100): correctness of the GPU paths, then img/s.

Prints one line per figure as soon as it is measured (a run cut short still leaves its figures) and writes them
all to --out as JSON. Sections, in order:
  decode      nvJPEG (decode: device) against the CPU decoder on the same files: mean |difference|
  compute     train img/s on random data already on the GPU, every variant of params.yaml at 256 px, batch 256,
              bf16 + channels_last (+ torch.compile for --compiled variants); the paper's setup (fp32, batch 64)
  end_to_end  the training loop of the train stage on those shards: read -> decode -> augment -> step, img/s and
              its ratio to the compute-only figure of the same config: xception compiled with both decode modes
              (and the loader alone, no model), every variant eager with GPU decoding
  train_stage landmark.train.train_variant itself for a few hundred steps (compile, dev evaluation included)
  inference   predict() over the shards, bf16, batch 256
  ddp         with several GPUs: the train stage under torchrun on all of them vs one, scaling efficiency
Usage: python benchmarks/gpu_check.py [--out results.json] [--images 8192] [--smoke]
--smoke runs every section at toy sizes on whatever device there is (the CPU here), to check the script itself.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.jpegs import write_jpegs  # noqa: E402
from landmark.data.loading import EpochBatches, decode_images  # noqa: E402
from landmark.data.shards import image_reader, pack  # noqa: E402
from landmark.models import create_model  # noqa: E402
from landmark.predict import image_dataset, make_loader, model_input, predict  # noqa: E402
from landmark.train import compiled, train_variant  # noqa: E402

RESULTS = {}


def report(key, value, text):
    RESULTS[key] = value
    print(f"{key}: {text}", flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def benchmark_variant(params, name, size, smoke):
    variant = dict(params["variants"][name], image_size=size, pretrained="none")
    if variant["backbone"] == "legacy_xception":
        variant["frozen_tensors"] = 0 if smoke else 85  # the paper's frozen block
    return variant


def train_steps(model, forward, batches, precision, device, steps, warmup):
    """img/s of `steps` optimizer steps after `warmup` ones; batches yields (input, target) on the device."""
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=3e-4, fused=device.type == "cuda"
    )
    images_done, started = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            started, images_done = time.perf_counter(), 0
        images, targets = next(batches)
        with torch.autocast(device.type, dtype=precision or torch.float32, enabled=precision is not None):
            loss = F.cross_entropy(forward(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images_done += len(targets)
    sync(device)
    return images_done / (time.perf_counter() - started)


def compute_only(params, name, device, size, batch, precision, channels_last, compile_model, steps, smoke):
    torch.manual_seed(0)
    model = create_model(benchmark_variant(params, name, size, smoke), 1000).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        model, images = (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        )
    targets = torch.randint(0, 1000, (batch,), device=device)

    def same_batch():
        while True:
            yield images, targets

    forward = compiled(model, compile_model, device)
    return train_steps(model, forward, same_batch(), precision, device, steps, warmup=3 if compile_model else 2)


def data_batches(loader, to_input, device):
    for images, targets, keys in loader:
        yield to_input(images, keys), targets.to(device, non_blocking=True)


def main(out, images, smoke):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    size, batch, steps = (32, 8, 3) if smoke else (256, 256, 15)
    images = 64 if smoke else images
    workers = min(os.cpu_count(), 16)
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    report("device", card, f"{card}, torch {torch.__version__}, {workers} loader workers, {images} images")
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    started = time.perf_counter()
    frame = write_jpegs(root / "raw", images, size=256 if not smoke else 48, workers=workers)
    pack(root / "raw", "train", frame, root / "shards", shard_bytes=2**30, seed=0)
    report(
        "data_seconds",
        time.perf_counter() - started,
        f"{images} JPEGs written and packed in {time.perf_counter() - started:.1f} s",
    )

    # decode: nvJPEG against the CPU decoder, same files
    reader = image_reader(root / "shards", "train", frame["id"][:64])
    blobs = [reader.read(index) for index in range(len(reader))]
    on_device = decode_images(blobs, size, device).float()
    on_cpu = decode_images(blobs, size, torch.device("cpu")).float().to(device)
    difference = (on_device - on_cpu).abs().mean().item()
    report("decode_mean_abs_difference", difference, f"{difference:.3f} grey levels (nvJPEG vs CPU) over 64 images")

    # compute-only
    for name in params["variants"]:
        figure = compute_only(params, name, device, size, batch, bf16, True, False, steps, smoke)
        report(f"compute_{name}_bf16_cl_b{batch}", figure, f"{figure:,.0f} img/s")
    for name in ("xception", "resnet50"):
        figure = compute_only(params, name, device, size, batch, bf16, True, True, steps, smoke)
        report(f"compute_{name}_bf16_cl_b{batch}_compiled", figure, f"{figure:,.0f} img/s")
        paper = compute_only(params, name, device, size, 64 if not smoke else batch, None, False, False, steps, smoke)
        report(f"compute_{name}_paper_fp32_b64", paper, f"{paper:,.0f} img/s")

    # loader alone, then end to end: xception compiled (as the train stage runs it on a GPU) with both decode
    # modes, and every other variant eager with GPU decoding, each against its own compute-only figure
    targets = frame["landmark_id"].to_numpy()
    runs = [("xception", True, "device"), ("xception", True, "worker")]
    runs += [(name, False, "device") for name in params["variants"]]
    for name, compile_model, decode in runs:
        model = create_model(benchmark_variant(params, name, size, smoke), 1000).to(device)
        model = model.to(memory_format=torch.channels_last)
        forward = compiled(model, compile_model, device)
        data = image_dataset(size, root / "shards", "train", frame["id"], targets, decode)
        to_input = model_input(model, data, device, augment_seed=0)
        loader = make_loader(data, batch, workers, device, EpochBatches(len(data), batch, 0))
        batches = data_batches(loader, to_input, device)
        if name == "xception" and compile_model:
            for _ in range(3):
                next(batches)
            sync(device)
            started, seen = time.perf_counter(), 0
            for _ in range(steps * 2):
                seen += len(next(batches)[1])
            sync(device)
            rate = seen / (time.perf_counter() - started)
            report(f"loader_{decode}", rate, f"{rate:,.0f} img/s (read -> decode ({decode}) -> augment), no model")
        rate = train_steps(model, forward, batches, bf16, device, steps * 2, warmup=3)
        ceiling = RESULTS[f"compute_{name}_bf16_cl_b{batch}" + ("_compiled" if compile_model else "")]
        label = f"end_to_end_{name}_{decode}" + ("_compiled" if compile_model else "")
        report(label, rate, f"{rate:,.0f} img/s, {rate / ceiling:.2f} of its compute-only figure")
        del loader, batches

    # the train stage's own function, on the same shards
    name = "xception"
    with tempfile.TemporaryDirectory() as folder:
        classes = pd.DataFrame({"landmark_id": np.unique(targets), "class_index": np.arange(len(np.unique(targets)))})
        dev = frame.iloc[: max(len(frame) // 16, batch)]
        variant = benchmark_variant(params, name, size, smoke) | {"batch_size": batch, "steps": 8 if smoke else 200}
        settings = dict(params["train"], num_workers=workers, eval_every=10**9, log_every=50, checkpoint_every=10**9)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        metrics = train_variant(
            name, variant, settings, root / "shards", frame, dev, classes, Path(folder) / "m.pt", Path(folder) / "plots"
        )
        report(
            "train_stage_xception", metrics["images_per_second"],
            f"{metrics['images_per_second']:,.0f} img/s over {variant['steps']} steps (compile and one dev pass included)",
        )  # fmt: skip

    # inference
    model = create_model(benchmark_variant(params, name, size, smoke), 1000).to(device)
    model = model.to(memory_format=torch.channels_last).eval()
    data = image_dataset(
        size, root / "shards", "train", frame["id"], None, "device" if device.type == "cuda" else "worker"
    )
    loader = make_loader(data, batch, workers, device)
    predict(model, loader, device)  # warm-up: workers, cuDNN autotuning
    sync(device)
    started = time.perf_counter()
    predict(model, loader, device)
    sync(device)
    rate = len(data) / (time.perf_counter() - started)
    report("inference_xception", rate, f"{rate:,.0f} img/s end to end (bf16, batch {batch})")

    # DDP scaling needs more than one GPU
    gpus = torch.cuda.device_count()
    if gpus > 1:
        for processes in (1, gpus):
            project = Path(tempfile.mkdtemp())
            command = [
                sys.executable,
                str(Path(__file__).parent / "ddp_scaling.py"),
                str(root / "shards"),
                str(processes),
            ]
            output = subprocess.run(command, cwd=project, capture_output=True, text=True, check=True).stdout
            report(f"ddp_{processes}_gpus", float(output.split()[-2]), output.strip())
        efficiency = RESULTS[f"ddp_{gpus}_gpus"] / (gpus * RESULTS["ddp_1_gpus"])
        report("ddp_scaling_efficiency", efficiency, f"{efficiency:.2f} on {gpus} GPUs")
    else:
        report("ddp", None, f"{gpus} GPU here: scaling not measured")
    Path(out).write_text(json.dumps(RESULTS, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--smoke", action="store_true")
    arguments = parser.parse_args()
    main(arguments.out, arguments.images, arguments.smoke)
