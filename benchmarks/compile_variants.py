"""Whether every variant of params.yaml trains under torch.compile: one forward + backward under bf16 autocast
(what the train stage runs on a GPU, where `compile: auto` is on), then the compiled fp32 loss against eager's.

Usage: python benchmarks/compile_variants.py [VARIANT ...]   (default: all; about 2 minutes a variant on 2 CPU
cores, with inductor's C++ backend; on a GPU, Triton's)
"""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parents[1]))

from landmark.models import create_model  # noqa: E402
from landmark.models.losses import CrossEntropy  # noqa: E402
from landmark.settings import load_settings  # noqa: E402
from landmark.train import training_step  # noqa: E402


def check(name, variant, device):
    torch.manual_seed(0)
    model = create_model(variant.model_copy(update={"image_size": 64, "pretrained": "none"}), 10).to(device)
    model = model.to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 64, 64, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (4,), device=device)
    with torch.no_grad():
        eager = F.cross_entropy(model(images), targets).item()
    torch._dynamo.reset()  # each variant compiled afresh, not against the cache limit of the ones before
    started = time.perf_counter()
    forward = torch.compile(model)
    # the train stage's step, with a rate of 0 so that the weights stay those eager's loss was computed with
    frozen = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    training_step(forward, CrossEntropy([1] * 10), frozen, torch.bfloat16, device)(images, targets)
    with torch.no_grad():
        compiled = F.cross_entropy(forward(images).float(), targets).item()
    seconds = time.perf_counter() - started
    print(
        f"{name}: compiled forward + backward in {seconds:.0f} s; fp32 loss eager {eager:.4f}, compiled {compiled:.4f}"
    )
    return abs(eager - compiled) <= 1e-3 * max(1.0, abs(eager))


def main(names):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants = load_settings(Path(__file__).parents[1] / "params.yaml").variants
    names = names or list(variants)
    unknown = [name for name in names if name not in variants]
    if unknown:
        sys.exit(f"error: {', '.join(unknown)}: not in params.yaml variants ({', '.join(variants)})")
    failed = [name for name in names if not check(name, variants[name], device)]
    print(f"{len(names) - len(failed)} of {len(names)} variants compile and agree with eager")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
