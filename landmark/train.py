"""The training loop: one variant, a fixed number of Adam steps, train curves per step and dev curves per
interval, logged to MLflow and DVC plots; checkpointed so a killed run resumes where it stopped."""

import hashlib
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from landmark.data.loading import EpochBatches, WaitClock, device_batches
from landmark.distributed import Ranks
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.metrics import batch_gap
from landmark.models import check_builds, create_model
from landmark.predict import dev_metrics, image_dataset, model_input, predict, save_model
from landmark.runtime import autocast_dtype, compiled, loader_workers, make_loader, pick_device
from landmark.settings import Runtime, Train, Variant, as_params
from landmark.tracking import TrainingLog


def _fingerprint(variant: Variant, training: Train, train_split, dev_split) -> str:
    """What a checkpoint must match to be resumed: what is trained and the exact data (not the runtime settings,
    which change only how fast it runs)."""
    params = [as_params(variant), as_params(training)]
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for frame in (train_split, dev_split):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _save_checkpoint(path, step, model, optimizer, log, fingerprint) -> None:
    state = {
        "step": step,
        "fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "mlflow_run_id": log.run_id,
        "rows": log.rows,
    }
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _load_checkpoint(path, fingerprint):
    """The checkpoint at path if it belongs to this very training, else None (a stale one is ignored)."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError):
        return None
    return state if state.get("fingerprint") == fingerprint else None


def _throughput(since, until, batch_size: int) -> dict:
    """img/s between two logging steps' marks (time, step, seconds in dev passes, seconds waiting for batches),
    dev passes left out, and the share of that time the step waited for its next batch: near 0 when the GPU (or
    the CPU's compute) sets the pace, high when the loader does."""
    seconds = (until[0] - since[0]) - (until[2] - since[2])
    return {
        "images_per_second": (until[1] - since[1]) * batch_size / seconds,
        "data_wait": (until[3] - since[3]) / seconds,
    }


def train_variant(
    name,
    variant: Variant,
    training: Train,
    runtime: Runtime,
    images_root,
    train_split,
    dev_split,
    classes,
    model_path,
    plots_dir,
    checkpoint_path=None,
):
    """Train one variant and save it to model_path; returns the final dev metrics.

    train_split, dev_split: frames with columns id, landmark_id. classes: the label encoding from the filter
    stage (landmark_id, class_index). Every `checkpoint_every` steps the full state (model, optimizer, RNG,
    step, curves, MLflow run) goes to checkpoint_path; a rerun of the same training resumes from it and ends
    exactly as an uninterrupted run would. Under torchrun (runtime.gpus > 1) every process calls this; each
    trains on its slice of every batch and the first one logs and writes the outputs.
    """
    where = f"variants.{name}"
    check_builds(variant, where)
    ranks = Ranks()
    torch.manual_seed(training.seed)
    device = pick_device(runtime.device)
    precision = autocast_dtype(training.precision, device)
    decode, image_size, batch_size = training.decode, variant.image_size, variant.batch_size
    my_slice = ranks.my_slice(batch_size)
    with ranks.joined(device) as device:
        class_index = pd.Series(classes["class_index"].to_numpy(), index=classes["landmark_id"].to_numpy())
        landmark_ids = classes["landmark_id"].to_numpy()
        model = create_model(variant, len(classes), where=where)
        model = model.to(device).to(memory_format=torch.channels_last)
        forward = compiled(ranks.wrap(model, device), runtime.compile, device)
        train_targets = class_index[train_split["landmark_id"]].to_numpy()
        train_data = image_dataset(image_size, images_root, "train", train_split["id"], train_targets, decode)
        to_input = model_input(model, train_data, device, variant.augmentation, augment_seed=training.seed)
        dev_targets = class_index[dev_split["landmark_id"]].to_numpy()
        my_dev = ranks.my_indices(len(dev_split))
        dev_data = image_dataset(
            image_size, images_root, "train", dev_split["id"].iloc[my_dev], dev_targets[my_dev], decode
        )
        workers = loader_workers(runtime.num_workers, device, ranks.world)
        dev_loader = make_loader(dev_data, runtime.inference_batch_size, workers, device)
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=variant.lr, fused=device.type == "cuda")

        steps, log_every, eval_every = variant.steps, runtime.log_every, runtime.eval_every
        checkpoint_every = runtime.checkpoint_every
        fingerprint = _fingerprint(variant, training, train_split, dev_split)
        resumed = _load_checkpoint(checkpoint_path, fingerprint)
        start = 0
        if resumed:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            torch.set_rng_state(resumed["torch_rng"])
            if resumed["cuda_rng"] and device.type == "cuda":
                torch.cuda.set_rng_state_all(resumed["cuda_rng"])
            start = resumed["step"]
            if ranks.leader:
                print(f"train {name}: resuming from step {start} ({checkpoint_path})")
        log = None
        if ranks.leader:
            params = {
                "variant": as_params(variant),
                "train": as_params(training),
                "runtime": as_params(runtime),
                "classes": len(classes),
                "processes": ranks.world,
            }
            log = TrainingLog(
                name,
                params,
                plots_dir,
                run_id=resumed["mlflow_run_id"] if resumed else None,
                rows=resumed["rows"] if resumed else None,
            )
        sampler = EpochBatches(len(train_data), batch_size, training.seed, start, part=my_slice)
        train_loader = make_loader(train_data, batch_size, workers, device, sampler)
        started = time.time()
        # Throughput counts from the first logging step on: torch.compile and the workers' start lie before it.
        # Dev passes in between are left out; checkpoints are not.
        evaluated = 0.0  # seconds so far in dev passes
        first_log = last_log = None  # (time, step, evaluated, seconds waiting for batches) at logging steps' syncs
        try:
            batches = WaitClock(device_batches(train_loader, to_input, device))
            progress = tqdm(
                range(start + 1, steps + 1), desc=f"train {name}", unit="step", mininterval=2, disable=not ranks.leader
            )
            for step in progress:
                images, targets, _ = next(batches)
                with torch.autocast(device.type, dtype=precision or torch.float32, enabled=precision is not None):
                    logits = forward(images)
                loss = F.cross_entropy(logits.float(), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                checkpoint_due = checkpoint_path is not None and step % checkpoint_every == 0 and step < steps
                if step % log_every == 0 or step == steps or checkpoint_due:
                    value = ranks.cat(loss.detach()[None]).mean().item()  # a host sync: only on logging steps
                    mark = (time.perf_counter(), step, evaluated, batches.seconds)
                    if log and last_log:
                        log.log_speed(step, _throughput(last_log, mark, batch_size))
                    first_log, last_log = first_log or mark, mark
                    if not math.isfinite(value):
                        kept = f"; the last good checkpoint is {checkpoint_path}" if checkpoint_path else ""
                        raise UserError(f"{where}: the loss became {value} at step {step}{kept}; try a lower lr")
                    confidence, predicted = logits.detach().float().softmax(dim=1).max(dim=1)
                    confidence, correct = ranks.cat(confidence), ranks.cat((predicted == targets).to(torch.uint8))
                    gap = batch_gap(confidence.cpu().numpy(), correct.cpu().numpy().astype(bool))
                    if log:
                        log.log("train", step, {"loss": value, "batch_gap": gap})
                    progress.set_postfix(loss=f"{value:.3f}")
                if step % eval_every == 0 or step == steps:
                    evaluation_started = time.perf_counter()
                    my_share = predict(model, dev_loader, device, desc="dev" if ranks.leader else None)
                    predicted_dev = [ranks.interleave(part) for part in my_share]
                    metrics = dev_metrics(dev_split["id"].to_numpy(), dev_targets, *predicted_dev, batch_size)
                    if log:
                        log.log(
                            "dev",
                            step,
                            {"loss": metrics["loss"], "gap": metrics["gap"], "batch_gap": metrics["batch_gap"]},
                        )
                        log.write_plots()
                    evaluated += time.perf_counter() - evaluation_started
                if checkpoint_due and ranks.leader:
                    _save_checkpoint(checkpoint_path, step, model, optimizer, log, fingerprint)
        except BaseException:
            if log:
                log.fail()
            raise
        if ranks.leader:
            save_model(model_path, model, variant, decode, landmark_ids, log.run_id)
            log.finish(artifacts=[model_path])
            if checkpoint_path is not None:
                Path(checkpoint_path).unlink(missing_ok=True)
        metrics["seconds"] = time.time() - started
        metrics["steps"] = steps - start  # this run's: fewer than the variant's after a resume
        if first_log and last_log[1] > first_log[1]:
            metrics |= _throughput(first_log, last_log, batch_size)
        else:  # too few steps to leave the start-up out
            metrics["images_per_second"] = (steps - start) * batch_size / metrics["seconds"]
            metrics["data_wait"] = batches.seconds / metrics["seconds"]
        return metrics
