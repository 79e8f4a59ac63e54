"""The training loop: one variant, a fixed number of Adam steps, train curves per step and dev curves per
interval, logged to MLflow and DVC plots; checkpointed so a killed run resumes where it stopped.

A training is one object, TrainingRun, as nanoGPT keeps its state in one place: what it trains (a TrainingJob:
the variant, its settings, its data and where its outputs go), the model, loss, optimizer and learning-rate
schedule, the batches, the dev pass, the checkpoint, the speed meter and the MLflow log. Its `train` reads top to
bottom: a step, and on their intervals a logged point, a dev pass, a checkpoint. The plumbing lives in the small
pieces above it: the one training step (the GPU benchmarks take it too), the schedule, the checkpoint format, the
speed meter and the dev pass.
"""

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from landmark.data.labels import LabelEncoding
from landmark.data.loading import EpochBatches, WaitClock, device_batches, image_dataset, model_input
from landmark.distributed import Ranks
from landmark.errors import UserError
from landmark.files import atomic_path, write_csv
from landmark.inference import predict, save_model
from landmark.metrics import batch_gap, dev_metrics
from landmark.models import check_builds, create_loss, create_model
from landmark.runtime import autocast_dtype, compiled, loader_workers, make_loader, pick_device
from landmark.settings import LearningRateSchedule, Runtime, StopEarly, Train, Variant
from landmark.tracking import TrainingLog


@dataclass(frozen=True)
class TrainingData:
    """What a variant learns from and is checked on: the images (packed shards or the Kaggle layout), the train
    and dev rows (id, landmark_id) and the classes it learns (the filter stage's classes.csv: landmark_id,
    class_index, images)."""

    images_root: Path
    train: pd.DataFrame
    dev: pd.DataFrame
    classes: pd.DataFrame


@dataclass(frozen=True)
class TrainingJob:
    """One training: the variant `name` of params.yaml with its settings, its data, and where it writes the model
    (its final dev predictions beside it), the curves (plots_dir) and the checkpoint (None: none kept)."""

    name: str
    variant: Variant
    training: Train
    runtime: Runtime
    data: TrainingData
    model_path: Path
    plots_dir: Path
    checkpoint_path: Path | None = None

    @property
    def where(self) -> str:
        """The params key errors name."""
        return f"variants.{self.name}"


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


def lr_factor(schedule: LearningRateSchedule | None, steps: int):
    """The share of lr that step s + 1 of `steps` trains at (torch's LambdaLR counts steps taken, from 0): 1 at
    every step without a schedule; with one, a linear warm-up, then a half cosine down to final_fraction."""
    if schedule is None:
        return lambda taken: 1.0
    warmup, final = schedule.warmup_steps, schedule.final_fraction

    def factor(taken: int) -> float:
        if taken < warmup:
            return (taken + 1) / warmup
        progress = (taken - warmup) / max(steps - 1 - warmup, 1)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class Checkpoint:
    """The resumable state of one training (model, optimizer, schedule, RNG, step, curves, MLflow run) at `path`,
    stamped with the fingerprint of what is trained and on which data: a checkpoint of another training is ignored.
    The runtime settings are not in it, so a run resumes across a change of how fast it runs. path None: none
    kept."""

    def __init__(self, job: TrainingJob):
        self.path = job.checkpoint_path
        digest = hashlib.sha256(
            json.dumps([job.variant.model_dump(), job.training.model_dump()], sort_keys=True).encode()
        )
        for frame in (job.data.train, job.data.dev):
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
    def restore(state, run: "TrainingRun") -> int:
        """Put the saved state back into run; returns the step it was saved at."""
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and run.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return state["step"]

    def save(self, step, run: "TrainingRun") -> None:
        state = {
            "step": step,
            "fingerprint": self.fingerprint,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "mlflow_run_id": run.log.run_id,
            "rows": run.log.rows,
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

    def __init__(self, run: "TrainingRun", workers: int):
        job, ranks = run.job, run.ranks
        self.model, self.loss_of, self.ranks, self.batch_size = run.model, run.loss_of, ranks, job.variant.batch_size
        dev = job.data.dev
        self.ids, self.targets = dev["id"].to_numpy(), run.labels.indices(dev["landmark_id"])
        self.labels, self.predicted = run.labels, None
        mine = ranks.my_indices(len(dev))
        data = image_dataset(
            job.variant.image_size, job.data.images_root, "train", self.ids[mine], self.targets[mine],
            job.training.decode,
        )  # fmt: skip
        self.loader = make_loader(data, job.runtime.inference_batch_size, workers, run.device)
        self.device = run.device

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


class TrainingRun:
    """One variant's training, its whole state in one place (the module docstring). Built on this process's
    device; `train` runs it. Under torchrun every process builds one and trains on its slice of every batch; the
    first one (the leader) logs and writes the outputs."""

    def __init__(self, job: TrainingJob, ranks: Ranks, device: torch.device):
        self.job, self.ranks, self.device = job, ranks, device
        variant, runtime = job.variant, job.runtime
        self.labels = LabelEncoding.from_classes(job.data.classes)
        model = create_model(variant, len(self.labels), where=job.where)
        self.model = model.to(device).to(memory_format=torch.channels_last)
        # margins index by the device's targets
        self.loss_of = create_loss(variant, self.labels.images, where=job.where).to(device)
        trainable = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=variant.lr, fused=device.type == "cuda")
        self.lr_factor = lr_factor(variant.lr_schedule, variant.steps)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        forward = compiled(ranks.wrap(self.model, device), runtime.compile, device)
        precision = autocast_dtype(job.training.precision, device)
        self.take_step = training_step(forward, self.loss_of, self.optimizer, precision, device)

        self.checkpoint = Checkpoint(job)
        resumed = self.checkpoint.load()
        self.start = Checkpoint.restore(resumed, self) if resumed else 0
        if resumed and ranks.leader:
            print(f"train {job.name}: resuming from step {self.start} ({job.checkpoint_path})")
        self.log = self._open_log(resumed) if ranks.leader else None

        workers = loader_workers(runtime.num_workers, device, ranks.on_this_machine)  # the machine's cores, shared
        self.batches = self._train_batches(workers)
        self.dev_pass = DevPass(self, workers)
        self.meter = SpeedMeter(variant.batch_size, self.batches)
        self.stop = EarlyStop(variant.stop_early, resumed["rows"]["dev"] if resumed else ())

    def train(self) -> dict:
        """Train to the variant's steps (or where stop_early stops it) and save the model; returns the final dev
        metrics, the run's speed and the step it ended at."""
        steps, runtime, ranks = self.job.variant.steps, self.job.runtime, self.ranks
        progress = tqdm(
            range(self.start + 1, steps + 1), desc=f"train {self.job.name}", unit="step", mininterval=2,
            disable=not ranks.leader,
        )  # fmt: skip
        try:
            for step in progress:
                images, targets, _ = next(self.batches)
                loss, logits = self.take_step(images, targets)
                self.schedule.step()
                checkpoint_due = self.checkpoint.path is not None and step % runtime.checkpoint_every == 0
                checkpoint_due = checkpoint_due and step < steps
                if step % runtime.log_every == 0 or step == steps or checkpoint_due:
                    progress.set_postfix(loss=f"{self.log_train_step(step, loss, logits, targets):.3f}")
                if step % runtime.eval_every == 0 or step == steps or self.stop.due(step):
                    with self.meter.paused():
                        metrics = self.dev_pass(step, self.log)
                    if self.stop.due(step) and self.stop.flat_after(metrics["gap"]):
                        break
                if checkpoint_due and ranks.leader:
                    self.checkpoint.save(step, self)
        except BaseException:
            if self.log:
                self.log.fail()
            raise
        if ranks.leader:
            self.save(metrics)
        # steps: this run's, fewer than the variant's after a resume; last_step: where it ended, early or not
        return metrics | self.meter.summary(step - self.start) | {"last_step": step}

    def log_train_step(self, step, loss, logits, targets) -> float:
        """A point of the train curves (loss, the paper's batch GAP) and the speed since the last one; stops on a
        non-finite loss. The loss is read here only: a host sync."""
        ranks, log = self.ranks, self.log
        value = ranks.cat(loss.detach()[None]).mean().item()
        speed = self.meter.mark(step)
        if log:  # the rate this step trained at: the schedule has moved on to the next one's
            log.log_unplotted(step, (speed or {}) | {"lr": self.job.variant.lr * self.lr_factor(step - 1)})
        if not math.isfinite(value):
            kept = f"; the last good checkpoint is {self.checkpoint.path}" if self.checkpoint.path else ""
            raise UserError(f"{self.job.where}: the loss became {value} at step {step}{kept}; try a lower lr")
        confidence, predicted = self.model.head.confidence(logits.detach())
        confidence, correct = ranks.cat(confidence), ranks.cat((predicted == targets).to(torch.uint8))
        if log:
            gap = batch_gap(confidence.cpu().numpy(), correct.cpu().numpy().astype(bool))
            log.log("train", step, {"loss": value, "batch_gap": gap})
        return value

    def save(self, metrics: dict) -> None:
        """The model, its final dev predictions beside it, and the finished MLflow run; the checkpoint goes."""
        job = self.job
        save_model(job.model_path, self.model, job.variant, job.training.decode, self.labels, self.log.run_id)
        self.dev_pass.write(dev_predictions_path(job.model_path))
        self.log.finish(metrics, artifacts=[job.model_path, dev_predictions_path(job.model_path)])
        self.checkpoint.remove()

    def _open_log(self, resumed) -> TrainingLog:
        """The MLflow run and DVC plots of this training (the resumed run's, where it resumes)."""
        job = self.job
        params = {"variant": job.variant.model_dump(), "train": job.training.model_dump()}
        params |= {"runtime": job.runtime.model_dump(), "classes": len(self.labels), "processes": self.ranks.world}
        if resumed:
            return TrainingLog(job.name, params, job.plots_dir, resumed["mlflow_run_id"], resumed["rows"])
        return TrainingLog(job.name, params, job.plots_dir, None, None)

    def _train_batches(self, workers: int) -> WaitClock:
        """This process's slice of every training batch from the start on, augmented on the device."""
        job, device = self.job, self.device
        variant, seed = job.variant, job.training.seed
        targets = self.labels.indices(job.data.train["landmark_id"])
        data = image_dataset(
            variant.image_size, job.data.images_root, "train", job.data.train["id"], targets, job.training.decode
        )
        to_input = model_input(self.model, data, device, variant.augmentation, augment_seed=seed)
        part = self.ranks.my_slice(variant.batch_size)
        sampler = EpochBatches(len(data), variant.batch_size, seed, self.start, part=part)
        loader = make_loader(data, variant.batch_size, workers, device, sampler)
        return WaitClock(device_batches(loader, to_input, device))


def train_variant(job: TrainingJob) -> dict:
    """Train one variant and save it (TrainingRun.train); the model is checked to build, and the seed set, first.
    Under torchrun (runtime.gpus > 1) every process calls this."""
    check_builds(job.variant, job.where)
    ranks = Ranks()
    torch.manual_seed(job.training.seed)
    with ranks.joined(pick_device(job.runtime.device)) as device:
        return TrainingRun(job, ranks, device).train()
