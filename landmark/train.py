"""The training loop: one variant, a fixed number of Adam steps, train curves per step and dev curves per
interval, logged to MLflow and DVC plots."""

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from landmark.data.loading import ImageFolderCSV, make_transform
from landmark.metrics import batch_gap
from landmark.models import create_model
from landmark.predict import dev_metrics, eval_dataset, make_loader, pick_device, predict, save_model
from landmark.tracking import TrainingLog


def _batches(loader):
    """Endless batches, epoch after epoch (the paper counted iterations, not epochs)."""
    while True:
        yield from loader


def train_variant(name, variant, settings, images_root, train_split, dev_split, classes, model_path, plots_dir):
    """Train one variant and save it to model_path; returns the final dev metrics.

    train_split, dev_split: frames with columns id, landmark_id. classes: the label encoding from the filter
    stage (landmark_id, class_index).
    """
    torch.manual_seed(settings["seed"])
    np.random.seed(settings["seed"])
    device = pick_device(settings["device"])
    class_index = pd.Series(classes["class_index"].to_numpy(), index=classes["landmark_id"].to_numpy())
    landmark_ids = classes["landmark_id"].to_numpy()

    model = create_model(variant, len(classes), where=f"variants.{name}")
    model = model.to(device).to(memory_format=torch.channels_last)
    config = model.data_config
    image_size, batch_size = int(variant["image_size"]), int(variant["batch_size"])
    train_data = ImageFolderCSV(
        images_root,
        "train",
        train_split["id"],
        class_index[train_split["landmark_id"]].to_numpy(),
        make_transform(image_size, config["mean"], config["std"], train=True),
    )
    dev_targets = class_index[dev_split["landmark_id"]].to_numpy()
    dev_data = eval_dataset(model, image_size, images_root, "train", dev_split["id"], dev_targets)
    generator = torch.Generator().manual_seed(settings["seed"])
    workers = int(settings["num_workers"])
    train_loader = make_loader(
        train_data,
        batch_size,
        workers,
        device,
        shuffle=True,
        generator=generator,
        drop_last=len(train_data) >= batch_size,
    )
    dev_loader = make_loader(dev_data, int(settings["eval_batch_size"]), workers, device)

    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=float(variant["lr"]), fused=device.type == "cuda")
    log = TrainingLog(name, {"variant": variant, "train": settings, "classes": len(classes)}, plots_dir)
    steps, log_every, eval_every = int(variant["steps"]), int(settings["log_every"]), int(settings["eval_every"])
    started = time.time()
    try:
        batches = _batches(train_loader)
        progress = tqdm(range(1, steps + 1), desc=f"train {name}", unit="step", mininterval=2)
        for step in progress:
            images, targets = next(batches)
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % log_every == 0 or step == steps:
                confidence, predicted = logits.detach().float().softmax(dim=1).max(dim=1)
                gap = batch_gap(confidence.cpu().numpy(), (predicted == targets).cpu().numpy())
                log.log("train", step, {"loss": loss.item(), "batch_gap": gap})
                progress.set_postfix(loss=f"{loss.item():.3f}")
            if step % eval_every == 0 or step == steps:
                classes_predicted, confidences, losses = predict(model, dev_loader, device, desc="dev")
                metrics = dev_metrics(
                    dev_split["id"].to_numpy(), dev_targets, classes_predicted, confidences, losses, batch_size
                )
                log.log(
                    "dev", step, {"loss": metrics["loss"], "gap": metrics["gap"], "batch_gap": metrics["batch_gap"]}
                )
                log.write_plots()
    except BaseException:
        log.fail()
        raise
    save_model(model_path, model, variant, landmark_ids, log.run_id)
    log.finish(artifacts=[model_path])
    metrics["seconds"] = time.time() - started
    metrics["images_per_second"] = steps * batch_size / metrics["seconds"]
    return metrics
