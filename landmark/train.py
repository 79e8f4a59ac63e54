"""The training loop: one variant, a fixed number of Adam steps, train curves per step and dev curves per
interval, logged to MLflow and DVC plots; checkpointed so a killed run resumes where it stopped.

train_variant reads top to bottom: the model, its loss and optimizer, the checkpoint to resume from, the
batches, then the loop (a step, and on their intervals a logged point, a dev pass, a checkpoint). The plumbing
lives in the small pieces above it: the one training step (the GPU benchmarks take it too), the checkpoint
format, the speed meter and the dev pass.
"""

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from landmark.data.loading import EpochBatches, WaitClock, device_batches
from landmark.distributed import Ranks
from landmark.errors import UserError
from landmark.files import atomic_path, write_csv
from landmark.inference import LabelEncoding, image_dataset, model_input, predict, save_model
from landmark.metrics import batch_gap, dev_metrics
from landmark.models import check_builds, create_loss, create_model
from landmark.runtime import autocast_dtype, compiled, loader_workers, make_loader, pick_device
from landmark.settings import Runtime, StopEarly, Train, Variant
from landmark.tracking import TrainingLog


def training_step(forward, loss_of, optimizer, precision, device):
    """One optimizer step on a batch: forward (under autocast when `precision` is a dtype), loss, backward, step.
    Returns (loss, logits), both still on the device: reading them is a host sync."""

    def step(images, targets):
        with torch.autocast(device.type, dtype=precision or torch.float32, enabled=precision is not None):
            logits = forward(images)
        loss = loss_of(logits, targets).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, logits

    return step


class Checkpoint:
    """The resumable state of one training (model, optimizer, RNG, step, curves, MLflow run) at `path`, stamped
    with the fingerprint of what is trained and on which data: a checkpoint of another training is ignored. The
    runtime settings are not in it, so a run resumes across a change of how fast it runs. path None: none kept."""

    def __init__(self, path, variant: Variant, training: Train, train_split, dev_split):
        self.path = path
        digest = hashlib.sha256(json.dumps([variant.model_dump(), training.model_dump()], sort_keys=True).encode())
        for frame in (train_split, dev_split):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        self.fingerprint = digest.hexdigest()

    def load(self):
        """The saved state if it belongs to this very training, else None."""
        if self.path is None or not Path(self.path).exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, OSError):
            return None
        return state if state.get("fingerprint") == self.fingerprint else None

    @staticmethod
    def restore(state, model, optimizer, device) -> int:
        """Put the saved state back; returns the step it was saved at."""
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return state["step"]

    def save(self, step, model, optimizer, log) -> None:
        state = {
            "step": step,
            "fingerprint": self.fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "mlflow_run_id": log.run_id,
            "rows": log.rows,
        }
        with atomic_path(self.path) as temporary:
            torch.save(state, temporary)

    def remove(self) -> None:
        if self.path is not None:
            Path(self.path).unlink(missing_ok=True)


class SpeedMeter:
    """img/s and the share of the time spent waiting for the next batch (near 0 when the GPU, or the CPU's
    compute, sets the pace; high when the loader does), between logging steps. Counts from the first logging
    step on (torch.compile and the workers' start lie before it) and leaves dev passes out."""

    def __init__(self, batch_size: int, batches: WaitClock):
        self.batch_size, self.batches = batch_size, batches
        self.started, self.evaluated = time.time(), 0.0
        self.first = self.last = None  # (time, step, seconds in dev passes, seconds waiting) at logging steps

    @contextlib.contextmanager
    def paused(self):
        """Time inside is a dev pass, left out of the rate."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.evaluated += time.perf_counter() - started

    def mark(self, step: int):
        """Mark a logging step (after its host sync); the figures since the mark before, or None at the first."""
        mark = (time.perf_counter(), step, self.evaluated, self.batches.seconds)
        figures = self._between(self.last, mark) if self.last else None
        self.first, self.last = self.first or mark, mark
        return figures

    def _between(self, since, until) -> dict:
        seconds = (until[0] - since[0]) - (until[2] - since[2])
        return {
            "images_per_second": (until[1] - since[1]) * self.batch_size / seconds,
            "data_wait": (until[3] - since[3]) / seconds,
        }

    def summary(self, steps_run: int) -> dict:
        """The whole run's figures (from the first to the last logging step where there were two)."""
        seconds = time.time() - self.started
        figures = {"seconds": seconds, "steps": steps_run}
        if self.first and self.last[1] > self.first[1]:
            return figures | self._between(self.first, self.last)
        # too few steps to leave the start-up out
        return figures | {
            "images_per_second": steps_run * self.batch_size / seconds,
            "data_wait": self.batches.seconds / seconds,
        }


class DevPass:
    """Training's dev evaluation: each process predicts its share of the dev images, the shares are gathered,
    and the first process logs the dev curve. The per-batch GAP uses the training batch size, as the paper did.
    The last pass's predictions are what the evaluate stage scores (`write`): the model is not run twice."""

    def __init__(self, model, loss_of, ranks, dev_split, labels, images_root, variant, decode, loading):
        """loading: (batch size, loader workers, device)."""
        self.model, self.loss_of, self.ranks, self.batch_size = model, loss_of, ranks, variant.batch_size
        self.ids, self.targets = dev_split["id"].to_numpy(), labels.indices(dev_split["landmark_id"])
        self.labels, self.predicted = labels, None
        mine = ranks.my_indices(len(dev_split))
        data = image_dataset(variant.image_size, images_root, "train", self.ids[mine], self.targets[mine], decode)
        self.loader, self.device = make_loader(data, *loading), loading[-1]

    def __call__(self, step: int, log) -> dict:
        desc = "dev" if self.ranks.leader else None
        my_share = predict(self.model, self.loader, self.device, self.loss_of, desc=desc)
        self.predicted = [self.ranks.interleave(part) for part in my_share]
        metrics = dev_metrics(self.ids, self.targets, *self.predicted, self.batch_size)
        if log:
            log.log("dev", step, {key: metrics[key] for key in ("loss", "gap", "batch_gap")})
            log.write_plots()
        return metrics

    def write(self, path) -> None:
        """The last pass's top-1 landmark, its confidence and the loss of every dev image, as a CSV (float32
        values written in full, so they read back bit for bit)."""
        classes, confidences, losses = self.predicted
        landmarks = self.labels.landmarks
        frame = pd.DataFrame({"id": self.ids, "landmark_id": landmarks(self.targets), "predicted": landmarks(classes)})
        write_csv(path, frame.assign(confidence=confidences, loss=losses), float_format="%.9g")


class EarlyStop:
    """A variant's stop_early (None: never): the steps its dev passes fall on, and whether the dev GAP has stopped
    rising. It reads the passes off the dev curve, which a checkpoint keeps, so a resumed training stops where an
    uninterrupted one would, and every DDP process decides alike."""

    def __init__(self, setting: StopEarly | None, dev_rows=()):
        self.setting = setting
        self.gaps = [row["gap"] for row in dev_rows if self.due(row["step"])]

    def due(self, step: int) -> bool:
        return self.setting is not None and step % self.setting.every == 0

    @staticmethod
    def never_stops(setting: StopEarly | None, steps: int) -> str | None:
        """Why setting cannot stop a training of this many steps (too few dev passes to find patience of them
        flat after a first), or None where it can, or where there is none."""
        if setting is None or steps // setting.every > setting.patience:
            return None
        return (
            f"stop_early cannot stop it: {steps} steps hold {steps // setting.every} dev passes (one every "
            f"{setting.every}), and a stop comes after {setting.patience + 1} at the earliest; it trains every step"
        )

    def flat_after(self, gap: float) -> bool:
        """After this pass's GAP: whether the last `patience` passes rose above none before them."""
        self.gaps.append(gap)
        patience = self.setting.patience
        return len(self.gaps) > patience and max(self.gaps[-patience:]) <= max(self.gaps[:-patience])


def dev_predictions_path(model_path) -> Path:
    """Where a trained model's final dev predictions lie: beside it, as dev_predictions.csv."""
    return Path(model_path).with_name("dev_predictions.csv")


def _train_batches(model, variant, training, images_root, train_split, labels, start, ranks, workers, device):
    """This process's slice of every training batch from `start` on, augmented on the device, as a WaitClock."""
    targets = labels.indices(train_split["landmark_id"])
    data = image_dataset(variant.image_size, images_root, "train", train_split["id"], targets, training.decode)
    to_input = model_input(model, data, device, variant.augmentation, augment_seed=training.seed)
    sampler = EpochBatches(len(data), variant.batch_size, training.seed, start, part=ranks.my_slice(variant.batch_size))
    return WaitClock(device_batches(make_loader(data, variant.batch_size, workers, device, sampler), to_input, device))


def _log_train_step(step, loss, logits, targets, model, ranks, log, meter, where, checkpoint) -> float:
    """A point of the train curves (loss, the paper's batch GAP) and the speed since the last one; stops on a
    non-finite loss. The loss is read here only: a host sync."""
    value = ranks.cat(loss.detach()[None]).mean().item()
    speed = meter.mark(step)
    if log and speed:
        log.log_speed(step, speed)
    if not math.isfinite(value):
        kept = f"; the last good checkpoint is {checkpoint.path}" if checkpoint.path else ""
        raise UserError(f"{where}: the loss became {value} at step {step}{kept}; try a lower lr")
    confidence, predicted = model.head.confidence(logits.detach())
    confidence, correct = ranks.cat(confidence), ranks.cat((predicted == targets).to(torch.uint8))
    if log:
        gap = batch_gap(confidence.cpu().numpy(), correct.cpu().numpy().astype(bool))
        log.log("train", step, {"loss": value, "batch_gap": gap})
    return value


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
    """Train one variant and save it to model_path, its final dev predictions beside it (dev_predictions_path);
    returns the final dev metrics, the run's speed and the step it ended at (below variant.steps where its
    stop_early stopped it).

    train_split, dev_split: frames with columns id, landmark_id. classes: the label encoding from the filter
    stage (landmark_id, class_index). Every `runtime.checkpoint_every` steps the full state goes to
    checkpoint_path; a rerun of the same training resumes from it and ends exactly as an uninterrupted run would.
    Under torchrun (runtime.gpus > 1) every process calls this; each trains on its slice of every batch and the
    first one logs and writes the outputs.
    """
    where, steps = f"variants.{name}", variant.steps
    check_builds(variant, where)
    ranks = Ranks()
    torch.manual_seed(training.seed)
    with ranks.joined(pick_device(runtime.device)) as device:
        labels = LabelEncoding.from_classes(classes)
        model = create_model(variant, len(labels), where=where).to(device).to(memory_format=torch.channels_last)
        loss_of = create_loss(variant, labels.images, where=where).to(device)  # margins index by device targets
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=variant.lr, fused=device.type == "cuda")
        forward = compiled(ranks.wrap(model, device), runtime.compile, device)
        take_step = training_step(forward, loss_of, optimizer, autocast_dtype(training.precision, device), device)

        checkpoint = Checkpoint(checkpoint_path, variant, training, train_split, dev_split)
        resumed = checkpoint.load()
        start = Checkpoint.restore(resumed, model, optimizer, device) if resumed else 0
        if resumed and ranks.leader:
            print(f"train {name}: resuming from step {start} ({checkpoint_path})")
        log = None
        if ranks.leader:
            params = {"variant": variant.model_dump(), "train": training.model_dump(), "runtime": runtime.model_dump()}
            params |= {"classes": len(labels), "processes": ranks.world}
            log = TrainingLog(
                name, params, plots_dir, resumed["mlflow_run_id"] if resumed else None, resumed and resumed["rows"]
            )

        workers = loader_workers(runtime.num_workers, device, ranks.on_this_machine)  # the machine's cores, shared
        batches = _train_batches(
            model, variant, training, images_root, train_split, labels, start, ranks, workers, device
        )
        loading = (runtime.inference_batch_size, workers, device)
        dev_pass = DevPass(model, loss_of, ranks, dev_split, labels, images_root, variant, training.decode, loading)
        meter = SpeedMeter(variant.batch_size, batches)
        stop = EarlyStop(variant.stop_early, resumed["rows"]["dev"] if resumed else ())
        progress = tqdm(
            range(start + 1, steps + 1), desc=f"train {name}", unit="step", mininterval=2, disable=not ranks.leader
        )
        try:
            for step in progress:
                images, targets, _ = next(batches)
                loss, logits = take_step(images, targets)
                checkpoint_due = checkpoint.path is not None and step % runtime.checkpoint_every == 0 and step < steps
                if step % runtime.log_every == 0 or step == steps or checkpoint_due:
                    value = _log_train_step(step, loss, logits, targets, model, ranks, log, meter, where, checkpoint)
                    progress.set_postfix(loss=f"{value:.3f}")
                if step % runtime.eval_every == 0 or step == steps or stop.due(step):
                    with meter.paused():
                        metrics = dev_pass(step, log)
                    if stop.due(step) and stop.flat_after(metrics["gap"]):
                        break
                if checkpoint_due and ranks.leader:
                    checkpoint.save(step, model, optimizer, log)
        except BaseException:
            if log:
                log.fail()
            raise
        if ranks.leader:
            save_model(model_path, model, variant, training.decode, labels, log.run_id)
            dev_pass.write(dev_predictions_path(model_path))
            log.finish(metrics, artifacts=[model_path, dev_predictions_path(model_path)])
            checkpoint.remove()
        # steps: this run's, fewer than the variant's after a resume; last_step: where it ended, early or not
        return metrics | meter.summary(step - start) | {"last_step": step}
