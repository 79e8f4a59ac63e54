"""Inference shared by evaluation and submission: load a trained model, predict top-1 class and confidence."""

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from landmark.data.loading import DeviceTransform, ImageDataset, device_batches
from landmark.data.shards import image_reader
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.metrics import global_average_precision, mean_batch_gap
from landmark.models import create_model
from landmark.settings import Variant, as_params, parse


def save_model(path, model, variant: Variant, decode: str, landmark_ids, run_id: str) -> None:
    """The weights with what inference needs to use them as trained: the variant's params, the decoder its
    training images went through, and the label encoding."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "variant": as_params(variant),
        "decode": decode,
        "landmark_ids": np.asarray(landmark_ids, dtype=np.int64).tolist(),
        "mlflow_run_id": run_id,
    }
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)


def load_model(path, device):
    """A trained model in eval mode, with its checkpoint (variant params, decode, landmark ids, MLflow run id)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model; run `dvc repro` to train it")
    checkpoint["variant"] = parse(Variant, checkpoint["variant"], f"{path} variant")
    model = create_model(checkpoint["variant"], len(checkpoint["landmark_ids"]), pretrained="none")
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint


def image_dataset(image_size: int, images_root, split, ids, targets=None, decode: str = "worker"):
    """The images of ids from images_root: packed shards (the pack stage's output) or the Kaggle layout."""
    return ImageDataset(image_reader(images_root, split, ids), targets, image_size=image_size, decode=decode)


def model_input(model, dataset, device, augmentation=None, augment_seed=None) -> DeviceTransform:
    """The batched device-side transform that turns this dataset's batches into the model's input; with an
    augmentation (landmark.settings.Augmentation) and its seed, training's."""
    config = model.data_config
    return DeviceTransform(
        dataset.image_size, config["mean"], config["std"], device, augmentation, augment_seed, len(dataset)
    )


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
