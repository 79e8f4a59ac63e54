"""Inference shared by evaluation and submission: load a trained model, predict top-1 class and confidence."""

import math
import os
import shutil

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from landmark.data.loading import DeviceTransform, ImageDataset, collate, device_batches
from landmark.data.shards import image_reader
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.metrics import global_average_precision, mean_batch_gap
from landmark.models import create_model


def device_setting(setting: str) -> str:
    """A `device` setting as it is, if it is one: auto, cpu, cuda or cuda:N."""
    if setting not in ("auto", "cpu", "cuda") and not str(setting).startswith("cuda:"):
        raise UserError(f"params.yaml device: {setting!r} is not auto, cpu or cuda")
    return setting


def pick_device(setting: str = "auto") -> torch.device:
    """`auto` takes the GPU when there is one and the CPU otherwise; `cuda` without a GPU is an error."""
    if device_setting(setting) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params.yaml device: {setting} asked for, but torch sees no GPU here; use auto or cpu")
    return torch.device(setting)


def decode_mode(setting: str) -> str:
    """Where JPEGs are decoded (see landmark.data.loading): `worker` (the default) or `device`. Workers win on a
    GPU too: on one H100 with 16 cores the compiled xception step ran at 5,549 img/s end to end with worker
    decoding and 4,710 with nvJPEG, whose kernels share the GPU with the step (docs/benchmarks.md); and the two
    decoders differ by a few grey levels, so training and inference should use the same one."""
    if setting not in ("worker", "device"):
        raise UserError(f"params.yaml decode: {setting!r} is not worker or device")
    return setting


def loader_workers(setting, device: torch.device, processes: int = 1, stage: str = "train") -> int:
    """How many loader workers `<stage>.num_workers` asks for: a number, or `auto`. On a GPU, auto is this
    process's share of the CPU cores less two (one thread queues the GPU work, one pins the batches), at most 16:
    on one H100 with 16 cores, 14 workers fed compiled xception best and 10 to 16 were within 4%, while each
    worker keeps 4 batches in shared memory (docs/benchmarks.md). On the CPU auto is none: the model's own
    threads already use every core, and on 2 cores a worker did not make the train stage faster."""
    if setting == "auto":
        if device.type != "cuda":
            return 0
        return min(16, max(0, len(os.sched_getaffinity(0)) // processes - 2))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise UserError(f"params.yaml {stage}.num_workers: {setting!r} is not auto or a whole number >= 0")
    return setting


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
            f"{math.ceil(needed / 2**30) + 1}g) or lower num_workers in params.yaml"
        )


def save_model(path, model, variant: dict, landmark_ids, run_id: str) -> None:
    checkpoint = {
        "state_dict": model.state_dict(),
        "variant": variant,
        "landmark_ids": np.asarray(landmark_ids, dtype=np.int64).tolist(),
        "mlflow_run_id": run_id,
    }
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)


def load_model(path, device):
    """A trained model in eval mode, with its checkpoint (variant params, landmark ids, MLflow run id)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model; run `dvc repro` to train it")
    model = create_model(checkpoint["variant"], len(checkpoint["landmark_ids"]), pretrained="none")
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint


def image_dataset(image_size: int, images_root, split, ids, targets=None, decode: str = "worker"):
    """The images of ids from images_root: packed shards (the pack stage's output) or the Kaggle layout."""
    return ImageDataset(image_reader(images_root, split, ids), targets, image_size=image_size, decode=decode)


def model_input(model, dataset, device, augment_seed=None) -> DeviceTransform:
    """The batched device-side transform that turns this dataset's batches into the model's input."""
    config = model.data_config
    return DeviceTransform(dataset.image_size, config["mean"], config["std"], device, augment_seed, len(dataset))


@torch.no_grad()
def predict(model, loader, device, desc="predict"):
    """Top-1 class index, its softmax confidence and, where targets are known, the per-image cross-entropy.
    desc labels the progress bar; None shows none."""
    was_training = model.training
    model.eval()
    batches = device_batches(loader, model_input(model, loader.dataset, device), device)
    known_targets = bool((loader.dataset.targets >= 0).all())
    classes, confidences, losses = [], [], []
    # Results stay on the device until the end: a .cpu() per batch would stall the GPU on every batch.
    progress = tqdm(batches, total=len(loader), desc=desc, unit="batch", leave=False, mininterval=1, disable=not desc)
    for images, targets, _ in progress:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(images).float()
        confidence, predicted = logits.softmax(dim=1).max(dim=1)
        classes.append(predicted)
        confidences.append(confidence)
        if known_targets:
            losses.append(F.cross_entropy(logits, targets, reduction="none"))
    model.train(was_training)
    if not classes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), None
    return (
        torch.cat(classes).cpu().numpy(),
        torch.cat(confidences).cpu().numpy(),
        torch.cat(losses).cpu().numpy() if losses else None,
    )


def dev_metrics(ids, targets, classes, confidences, losses, paper_batch_size: int) -> dict:
    """Kaggle GAP (every dev image shows a landmark), the paper's per-batch GAP, loss and top-1 accuracy."""
    correct = classes == targets
    predictions = pd.DataFrame({"id": ids, "landmark_id": classes, "confidence": confidences})
    solution = pd.DataFrame({"id": ids, "landmarks": [[int(target)] for target in targets]})
    return {
        "gap": global_average_precision(predictions, solution),
        "batch_gap": mean_batch_gap(confidences, correct, paper_batch_size),
        "loss": float(np.mean(losses)),
        "accuracy": float(np.mean(correct)),
        "images": int(len(ids)),
    }
