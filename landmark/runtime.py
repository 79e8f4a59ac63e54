"""How this machine runs a model: the device, the arithmetic, torch.compile, loader workers and loaders. The values
come checked from landmark.settings; what is checked here is what only this machine can say (a GPU, a compiler,
room in /dev/shm)."""

import math
import os
import shutil
import sys

import torch

from landmark.data.loading import collate
from landmark.errors import UserError


def pick_device(setting: str = "auto") -> torch.device:
    """`auto` takes the GPU when there is one and the CPU otherwise; `cuda` without a GPU is an error."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params.yaml runtime.device: {setting} asked for, but torch sees no GPU here; use auto or cpu")
    return torch.device(setting)


def autocast_dtype(setting: str, device: torch.device, name: str = "train.precision"):
    """The autocast dtype for a precision setting (`name`: train.precision, embed.precision), or None for plain
    fp32: `auto` is bf16 on a GPU, fp32 on the CPU. bf16 asked for on a CPU that emulates it is said in one line."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if setting == "bf16" and not native_bf16(device):
        print(
            f"params.yaml {name}: bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX), which emulates it "
            "slower than fp32; set it to fp32 or auto on this machine",
            file=sys.stderr,
        )
    return {"fp32": None, "bf16": torch.bfloat16}[setting]


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 in hardware: a GPU, or a CPU with AVX512-BF16 or AMX (oneDNN's bf16
    kernels, up to twice fp32's speed: docs/benchmarks.md). Elsewhere bf16 is emulated, slower than fp32."""
    if device.type != "cpu":
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, not public: absent is False
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot build kernels for `device` on this machine (no C compiler for inductor's C++ or
    Triton code, no Triton), in one line; None when it can. Compiles one tiny function with inductor's graph
    cache off, so its kernels cached by an earlier run cannot hide a missing compiler."""

    def probe(values):
        return values * 2 + 1

    try:
        with torch._inductor.config.patch(fx_graph_cache=False):
            torch.compile(probe)(torch.ones(4, device=device))
    except Exception as error:  # any failure here is the machine's: the function itself always compiles
        first_line = str(error).strip().partition("\n")[0]
        return f"{type(error).__name__}: {first_line}"
    return None


def will_compile(setting, device: torch.device) -> bool:
    """Whether to torch.compile (`auto`: on a GPU only, where it pays), checked on this machine: where it cannot
    compile, `auto` trains without it (saying so in one line) and `true` stops before training, instead of
    either failing at the first step."""
    if setting is False or (setting == "auto" and device.type != "cuda"):
        return False
    problem = compile_problem(device)
    if problem is None:
        return True
    if setting is True:
        raise UserError(
            f"params.yaml runtime.compile: true, but torch.compile cannot build kernels on {device.type} here "
            f"({problem}); install a C compiler (gcc) or set runtime.compile: auto or false"
        )
    print(
        f"train: torch.compile cannot build kernels on {device.type} here ({problem}); training without it "
        "(install a C compiler, gcc, for its speed; runtime.compile: false skips this check)",
        file=sys.stderr,
    )
    return False


def compiled(model, setting, device):
    """The model's forward under torch.compile when `compile` says so and this machine can."""
    return torch.compile(model) if will_compile(setting, device) else model


def loader_workers(setting, device: torch.device, processes: int = 1) -> int:
    """How many loader workers `runtime.num_workers` asks for: a number, or `auto`. On a GPU, auto is this
    process's share of the CPU cores less two (one thread queues the GPU work, one pins the batches), at most 16,
    since each worker keeps 4 batches in shared memory (docs/benchmarks.md, "Training speed": the worker counts
    measured on a GPU). On the CPU auto is none: the model's own threads already use every core (the same table:
    a worker on 2 cores)."""
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return 0
    return min(16, max(0, len(os.sched_getaffinity(0)) // processes - 2))


def make_loader(dataset, batch_size, num_workers, device, batch_sampler=None):
    """Batches in order, or those of batch_sampler (training's EpochBatches, whose batch_size is the global
    batch under DDP: every process's workers share the one /dev/shm)."""
    ready_per_worker = 4
    if num_workers and dataset.decode == "worker" and os.path.isdir("/dev/shm"):
        needed = num_workers * ready_per_worker * batch_size * 3 * dataset.image_size**2
        _check_shared_memory(needed, num_workers)
    batching = {"batch_sampler": batch_sampler} if batch_sampler else {"batch_size": batch_size}
    return torch.utils.data.DataLoader(
        dataset,
        **batching,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=ready_per_worker if num_workers > 0 else None,
    )


def _check_shared_memory(needed: int, num_workers: int) -> None:
    """Workers hand their batches over in /dev/shm. A container's is 64 MB unless told otherwise, where a
    worker would die mid-run with a bus error: refuse before starting instead, naming the fix."""
    free = shutil.disk_usage("/dev/shm").free
    if needed > free:
        raise UserError(
            f"/dev/shm has {free / 2**30:.2f} GiB free, but {num_workers} loader workers keep up to "
            f"{needed / 2**30:.2f} GiB of decoded batches there; give it more (docker run --shm-size="
            f"{math.ceil(needed / 2**30) + 1}g) or lower runtime.num_workers in params.yaml"
        )
