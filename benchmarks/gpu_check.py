"""The GPU check of issue #5 in one run (docs/benchmarks.md: how long): correctness of the GPU paths, then img/s.

Prints one line per figure as soon as it is measured and rewrites --out (JSON) after each, so a run cut short
still leaves its figures; a section that fails prints its traceback and the next one runs. Each timed figure is
followed by a `_cpu` line: the cores the main thread, the process's other threads and the loader workers used
meanwhile, and for the data path the share of the time the step waited for its next batch (docs/benchmarks.md
says how to read them). Sections, most important first:
  decode       nvJPEG (decode: device) against the CPU decoder on the same files: mean |difference|; and
               whether decoding overwrites freed memory that queued kernels still read (torchvision's CUDA
               decoder alone does, pytorch/vision#9606; landmark.data.loading's use of it must not)
  host_syncs   the host syncs in one training step with each decoder (CUDA's sync debug mode): a step that
               waits for the GPU cannot queue the next one while the GPU works
  compute      train img/s on random data already on the GPU at 256 px, batch 256, bf16 + channels_last: every
               variant of params.yaml eager, then xception compiled
  end_to_end   the train stage's data path on packed shards: read -> decode -> augment -> step, img/s and its
               ratio to the compute-only figure of the same model; xception compiled with each decoder (and the
               loader alone, no model), and once more with each batch prepared on the step's own stream, as
               before landmark.data.loading.device_batches; then every variant eager with worker decoding (the
               default). Timed after the loader's prefetch queue has drained, so the figure is the sustained rate.
  inference    predict() over the shards, bf16, batch 256, with each decoder
  train_stage  landmark.train.train_variant itself (compiled, logging to a throw-away MLflow store)
  paper        the paper's setup: fp32, NCHW, batch 64
  ddp          with several GPUs: the train stage under torchrun on all of them vs one, scaling efficiency
  paper_profile  run only when --sections names it (a second compile: about a minute): the paper profile's
               setting (profiles/paper.yaml), the paper's batch of 64 trained as this pipeline does (xception
               compiled, bf16), compute only and end to end
Usage: python benchmarks/gpu_check.py [--out results.json] [--images 16384] [--workers N] [--sections a,b] [--smoke]
--workers: loader workers (default: what the train stage's `num_workers: auto` gives on this machine).
--sections: the sections to run, comma-separated (default: all but paper_profile); end_to_end gives its ratios
when compute ran before it.
--smoke runs every section at toy sizes on whatever device there is (the CPU here), to check the script itself.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.io import decode_jpeg

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.cpu_use import cpu_use, describe  # noqa: E402
from benchmarks.jpegs import scratch_folder, write_jpegs  # noqa: E402
from landmark.data.loading import EpochBatches, WaitClock, decode_images, device_batches, image_dataset, model_input  # noqa: E402  # noqa: E402
from landmark.data.shards import image_reader, pack  # noqa: E402
from landmark.inference import predict  # noqa: E402
from landmark.models import create_model  # noqa: E402
from landmark.models.losses import CrossEntropy  # noqa: E402
from landmark.runtime import compiled, loader_workers, make_loader  # noqa: E402
from landmark.settings import load_settings  # noqa: E402
from landmark.train import TrainingData, TrainingJob, train_variant, training_step  # noqa: E402

RESULTS = {}


def report(key, value, text, out):
    RESULTS[key] = value
    print(f"{key}: {text}", flush=True)
    partial = Path(f"{out}.partial")
    partial.write_text(json.dumps(RESULTS, indent=2) + "\n")
    partial.replace(out)


@contextlib.contextmanager
def section(name, out):
    """Run one section; a failure is reported with its traceback and does not stop the sections after it."""
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        traceback.print_exc()
        report(f"{name}_error", f"{type(error).__name__}: {error}", f"FAILED: {type(error).__name__}: {error}", out)
        if "CUDA error" in str(error):  # the CUDA context is lost: every later section would fail the same way
            raise SystemExit(1) from error
    print(f"-- {name}: {time.perf_counter() - started:.0f} s", flush=True)


def host_syncs(step):
    """The host syncs torch reports while `step()` runs (CUDA's sync debug mode), first line of each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(warning.message).splitlines()[0] for warning in caught if "synchroniz" in str(warning.message)]


def overwritten_reads(decode, device, rounds=20):
    """Rounds (of `rounds`) in which `decode` overwrote memory that kernels queued before it were still to read:
    each round frees 64 buffers (each the size of one decoded image) whose sums are queued behind a busy
    kernel, decodes, then checks the sums."""
    corrupted = 0
    expected = torch.arange(64, device=device, dtype=torch.float32) * 49_152
    for _ in range(rounds):
        buffers = [torch.full((49_152,), float(value), device=device) for value in range(64)]  # 3 × 256 × 256 bytes
        torch.cuda._sleep(20_000_000)  # ~10 ms of busy GPU, so the sums below are still queued during decode()
        sums = torch.stack([buffer.sum() for buffer in buffers])
        del buffers
        decode()
        corrupted += int(not torch.equal(sums, expected))
    return corrupted


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def benchmark_variant(params, name, size, smoke):
    variant = params.variants[name].model_copy(update={"image_size": size, "pretrained": "none"})
    if variant.backbone == "legacy_xception":
        variant = variant.model_copy(update={"frozen_tensors": 0 if smoke else 85})  # the paper's frozen block
    return variant


def benchmark_step(model, forward, batches, precision, device):
    """A function that takes the train stage's training step on the next (input, target) of batches and returns
    its size."""
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=3e-4, fused=device.type == "cuda"
    )
    take_step = training_step(forward, CrossEntropy([1] * 1000), optimizer, precision, device)

    def step():
        images, targets, _ = next(batches)
        take_step(images, targets)
        return len(targets)

    return step


def images_per_second(work, device, steps, warmup, batches=None):
    """img/s of `steps` calls of work() (each returns how many images it did) after `warmup` untimed ones, and
    the cores each part of this process and its workers used meanwhile (benchmarks.cpu_use); with `batches` (a
    WaitClock that work() draws from), also the share of the time spent waiting for the next batch."""
    for _ in range(warmup):
        work()
    sync(device)
    if batches:
        batches.seconds = 0.0
    with cpu_use() as use:
        started = time.perf_counter()
        images = sum(work() for _ in range(steps))
        sync(device)
        seconds = time.perf_counter() - started
    if batches:
        use["waiting_for_data"] = batches.seconds / seconds
    return images / seconds, use


@dataclass(frozen=True)
class Bench:
    """What the sections measure with: the settings, the device, the packed JPEGs (root, frame), the image size,
    batch, loader workers and timed steps, whether it is a smoke run, and the JSON the figures go to."""

    params: object
    device: torch.device
    root: Path
    frame: pd.DataFrame
    size: int
    batch: int
    workers: int
    steps: int
    smoke: bool
    out: str


def compute_only(bench: Bench, name, batch, precision, channels_last, compile_model):
    device, size = bench.device, bench.size
    torch.manual_seed(0)
    model = create_model(benchmark_variant(bench.params, name, size, bench.smoke), 1000).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        model, images = (
            model.to(memory_format=torch.channels_last),
            images.contiguous(memory_format=torch.channels_last),
        )
    targets = torch.randint(0, 1000, (batch,), device=device)

    def same_batch():
        while True:
            yield images, targets, None

    forward = compiled(model, compile_model, device)
    step = benchmark_step(model, forward, same_batch(), precision, device)
    return images_per_second(step, device, bench.steps, warmup=3 if compile_model else 2)


def inference(bench: Bench, decode):
    device, batch, out = bench.device, bench.batch, bench.out
    model = create_model(benchmark_variant(bench.params, "xception", bench.size, bench.smoke), 1000).to(device)
    model = model.to(memory_format=torch.channels_last).eval()
    data = image_dataset(bench.size, bench.root / "shards", "train", bench.frame["id"], None, decode)
    loader = make_loader(data, batch, bench.workers, device)
    predict(model, loader, device)  # warm-up: workers, cuDNN autotuning
    sync(device)
    with cpu_use() as use:
        started = time.perf_counter()
        for _ in range(2):
            predict(model, loader, device)
        sync(device)
        rate = 2 * len(data) / (time.perf_counter() - started)
    report(f"inference_xception_{decode}", rate, f"{rate:,.0f} img/s end to end (batch {batch})", out)
    report(f"inference_xception_{decode}_cpu", use, describe(use), out)


def serial_batches(loader, to_input, device):
    """The data path before device_batches, for comparison: each batch copied and transformed when the step
    asks for it, on the step's own stream."""
    for images, targets, keys in loader:
        yield to_input(images, keys), targets.to(device, non_blocking=True), keys


SECTIONS = ("decode", "host_syncs", "compute", "end_to_end", "inference", "train_stage", "paper", "ddp")


def main(out, images, workers, sections, smoke):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = load_settings(Path(__file__).parents[1] / "params.yaml")
    images = 64 if smoke else images
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if workers is None:  # the smoke run goes through loader workers too, which the CPU's auto (none) would skip
        workers = 2 if smoke else loader_workers("auto", device)
    with scratch_folder(images) as root:
        measure(out, params, device, root, images, workers, sections, smoke)


def measure(out, params, device, root, images, workers, sections, smoke):
    size, batch, steps = (32, 8, 3) if smoke else (256, 256, 15)
    # The loader keeps workers × prefetch_factor (4) batches queued: time only after that queue has drained.
    drain, timed_steps = workers * 4 + 6, steps * 3
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    report("device", card, f"{card}, torch {torch.__version__}, {workers} loader workers, {images} images", out)
    started = time.perf_counter()
    frame = write_jpegs(root / "raw", images, size=256 if not smoke else 48, workers=os.cpu_count())
    pack(root / "raw", "train", frame, root / "shards", shard_bytes=2**30, seed=0)
    seconds = time.perf_counter() - started
    report("data_seconds", seconds, f"{images} JPEGs written and packed in {seconds:.1f} s", out)
    targets = frame["landmark_id"].to_numpy()
    bench = Bench(params, device, root, frame, size, batch, workers, steps, smoke, out)

    if "decode" in sections:
        with section("decode", out):
            reader = image_reader(root / "shards", "train", frame["id"][:64])
            blobs = [reader.read(index) for index in range(len(reader))]
            on_device = decode_images(blobs, size, device).float()
            on_cpu = decode_images(blobs, size, torch.device("cpu")).float().to(device)
            difference = (on_device - on_cpu).abs().mean().item()
            report(
                "decode_mean_abs_difference", difference, f"{difference:.3f} grey levels (nvJPEG vs CPU), 64 images",
                out,
            )  # fmt: skip
            if device.type == "cuda":
                data = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
                for key, decode in (
                    ("decode_overwrites_torchvision", lambda: decode_jpeg(data, device=device)),
                    ("decode_overwrites_ours", lambda: decode_images(blobs, size, device)),
                ):
                    rounds = overwritten_reads(decode, device)
                    report(key, rounds, f"{rounds} of 20 rounds saw queued reads of freed memory overwritten", out)

    if device.type == "cuda" and "host_syncs" in sections:
        with section("host_syncs", out):
            model = create_model(benchmark_variant(params, "xception", size, smoke), 1000).to(device)
            model = model.to(memory_format=torch.channels_last)
            for decode in ("worker", "device"):
                data = image_dataset(size, root / "shards", "train", frame["id"], targets, decode)
                loader = make_loader(data, batch, 4, device, EpochBatches(len(data), batch, 0))
                # the train stage's step between logging steps, loading and device-side transform included
                to_input = model_input(model, data, device, params.variants["xception"].augmentation, augment_seed=0)
                batches = device_batches(loader, to_input, device)
                step = benchmark_step(model, model, batches, bf16, device)
                step()  # the first step sets up cuDNN and Adam's state
                syncs = host_syncs(step)
                report(f"host_syncs_{decode}", syncs, f"{len(syncs)} in a training step: {syncs[:3]}", out)
                del loader, batches

    def compute_key(name, compile_model, batch_size=batch):
        return f"compute_{name}_bf16_cl_b{batch_size}" + ("_compiled" if compile_model else "")

    def compute(key, name, batch_size, precision, channels_last, compile_model):
        with section(key, out):
            figure, use = compute_only(bench, name, batch_size, precision, channels_last, compile_model)
            report(key, figure, f"{figure:,.0f} img/s", out)
            report(f"{key}_cpu", use, describe(use), out)

    if "compute" in sections:
        for name in params.variants:
            compute(compute_key(name, False), name, batch, bf16, True, False)
        compute(compute_key("xception", True), "xception", batch, bf16, True, True)

    def end_to_end(name, compile_model, decode, serial=False, batch_size=batch):
        label = f"end_to_end_{name}_{decode}" + ("_compiled" if compile_model else "") + ("_serial" if serial else "")
        label += f"_b{batch_size}" if batch_size != batch else ""
        timed = timed_steps * batch // batch_size  # as many images as at the full batch
        with section(label, out):
            model = create_model(benchmark_variant(params, name, size, smoke), 1000).to(device)
            model = model.to(memory_format=torch.channels_last)
            forward = compiled(model, compile_model, device)
            data = image_dataset(size, root / "shards", "train", frame["id"], targets, decode)
            to_input = model_input(model, data, device, params.variants[name].augmentation, augment_seed=0)
            loader = make_loader(data, batch_size, workers, device, EpochBatches(len(data), batch_size, 0))
            batches = WaitClock((serial_batches if serial else device_batches)(loader, to_input, device))
            if name == "xception" and compile_model and not serial and batch_size == batch:
                rate, use = images_per_second(lambda: len(next(batches)[1]), device, timed, drain, batches)
                report(
                    f"loader_{decode}", rate, f"{rate:,.0f} img/s (read -> decode ({decode}) -> augment), no model", out
                )
                report(f"loader_{decode}_cpu", use, describe(use), out)
            step = benchmark_step(model, forward, batches, bf16, device)
            rate, use = images_per_second(step, device, timed, drain, batches)
            ceiling = RESULTS.get(compute_key(name, compile_model, batch_size))
            ratio = f", {rate / ceiling:.2f} of its compute-only figure" if ceiling else ""
            report(label, rate, f"{rate:,.0f} img/s{ratio}", out)
            report(f"{label}_cpu", use, describe(use), out)

    if "end_to_end" in sections:
        end_to_end("xception", True, "worker")
        end_to_end("xception", True, "device")
        end_to_end("xception", True, "worker", serial=True)

    if "inference" in sections:
        for decode in ("worker", "device"):
            with section(f"inference_xception_{decode}", out):
                inference(bench, decode)

    if "train_stage" in sections:
        with section("train_stage_xception", out), tempfile.TemporaryDirectory() as folder:
            # 1000 classes, as in the sections above, so torch.compile finds this graph in its cache
            classes = pd.DataFrame({"landmark_id": np.arange(1000), "class_index": np.arange(1000), "images": 1})
            dev = frame.iloc[: max(len(frame) // 16, batch)]
            variant = benchmark_variant(params, "xception", size, smoke).model_copy(
                update={"batch_size": batch, "steps": 8 if smoke else 200}
            )
            log_every = 2 if smoke else 50
            runtime = params.runtime.model_copy(
                update={"num_workers": workers, "eval_every": 10**9, "log_every": log_every, "checkpoint_every": 10**9}
            )
            os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
            data = TrainingData(root / "shards", frame, dev, classes)
            job = TrainingJob(
                "xception", variant, params.train, runtime, data, Path(folder) / "m.pt", Path(folder) / "plots"
            )
            metrics = train_variant(job)
            report(
                "train_stage_xception", metrics["images_per_second"],
                f"{metrics['images_per_second']:,.0f} img/s from step {log_every} to {variant.steps}, "
                f"{metrics['data_wait']:.2f} of the time waiting for data (the stage's own figures; "
                f"{metrics['seconds']:.0f} s in all with compile and a dev pass)", out,
            )  # fmt: skip

    if "end_to_end" in sections:
        for name in params.variants:
            end_to_end(name, False, "worker")

    if "paper" in sections:
        for name in ("xception", "resnet50"):
            compute(f"compute_{name}_paper_fp32_b64", name, 64 if not smoke else batch, None, False, False)

    if "ddp" in sections:
        gpus = torch.cuda.device_count()
        if gpus < 2:
            report("ddp", None, f"{gpus} GPU here: scaling not measured", out)
        else:
            with section("ddp", out):
                for processes in (1, gpus):
                    project = Path(tempfile.mkdtemp())
                    command = [
                        sys.executable,
                        str(Path(__file__).parent / "ddp_scaling.py"),
                        str(root / "shards"),
                        str(processes),
                    ]
                    output = subprocess.run(command, cwd=project, capture_output=True, text=True, check=True).stdout
                    report(f"ddp_{processes}_gpus", float(output.split()[-2]), output.strip(), out)
                efficiency = RESULTS[f"ddp_{gpus}_gpus"] / (gpus * RESULTS["ddp_1_gpus"])
                report("ddp_scaling_efficiency", efficiency, f"{efficiency:.2f} on {gpus} GPUs", out)

    if "paper_profile" in sections:
        # The paper profile keeps the paper's batch of 64 and trains compiled in bf16: its own ceiling and rate.
        # Compiled afresh: a second batch size would otherwise make torch.compile recompile for any batch size.
        torch._dynamo.reset()
        paper_batch = 64 if not smoke else batch // 2
        compute(compute_key("xception", True, paper_batch), "xception", paper_batch, bf16, True, True)
        end_to_end("xception", True, "worker", batch_size=paper_batch)


def section_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - {*SECTIONS, "paper_profile"})
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or text!r}: not among {', '.join(SECTIONS)}, paper_profile"
        )
    return names


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--images", type=int, default=16384)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--sections", type=section_list, default=list(SECTIONS))
    parser.add_argument("--smoke", action="store_true")
    arguments = parser.parse_args()
    main(arguments.out, arguments.images, arguments.workers, arguments.sections, arguments.smoke)
