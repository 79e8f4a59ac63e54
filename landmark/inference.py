"""Inference in one place: a trained model as saved with everything needed to use it as trained (its variant,
the decoder its images went through, the label encoding), and prediction or embedding of the images of a split.
Training's dev passes, evaluation, the embed stage and the saliency maps all go through here."""

import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from landmark.data.labels import LabelEncoding
from landmark.data.loading import ImageDataset, device_batches, image_dataset, model_input
from landmark.errors import UserError
from landmark.files import atomic_path
from landmark.models import create_model
from landmark.runtime import autocast_dtype, loader_workers, make_loader, native_bf16
from landmark.settings import Runtime, Variant, parse


@torch.no_grad()
def predict(model, loader, device, loss=None, desc="predict"):
    """Top-1 class index, its confidence (as the model's head reads it) and, with the variant's loss where the
    targets are known, the loss of each image. desc labels the progress bar; None shows none."""
    was_training = model.training
    model.eval()
    batches = device_batches(loader, model_input(model, loader.dataset, device), device)
    known_targets = loss is not None and bool((loader.dataset.targets >= 0).all())
    classes, confidences, losses = [], [], []
    # Results stay on the device until the end: a .cpu() per batch would stall the GPU on every batch.
    progress = tqdm(batches, total=len(loader), desc=desc, unit="batch", leave=False, mininterval=1, disable=not desc)
    for images, targets, _ in progress:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(images).float()
        confidence, predicted = model.head.confidence(logits)
        classes.append(predicted)
        confidences.append(confidence)
        if known_targets:
            losses.append(loss(logits, targets))
    model.train(was_training)
    if not classes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), None
    return (
        torch.cat(classes).cpu().numpy(),
        torch.cat(confidences).cpu().numpy(),
        torch.cat(losses).cpu().numpy() if losses else None,
    )


@dataclass(frozen=True)
class Looks:
    """How embed looks at each image: resized by each scale, each look mirrored too where flip, and the model run
    under autocast to dtype (bf16) or in fp32 (None), by torch or by ONNX Runtime (engine)."""

    scales: tuple = (1.0,)
    flip: bool = False
    dtype: torch.dtype | None = None
    engine: str = "torch"

    @classmethod
    def of(cls, looked: dict, device: torch.device) -> "Looks":
        """As `looked` says (scales, flip, precision: params.yaml's embed section, or the looks.json the embed stage
        wrote), on this device. Precision auto is bf16 where the device computes it in hardware (a GPU, a CPU with
        AVX512-BF16 or AMX), within 1e-4 of fp32's cosines (docs/benchmarks.md), and fp32 elsewhere."""
        engine = looked.get("engine", "torch")  # a looks.json from before the setting: torch embedded
        if engine == "auto":
            engine = "onnxruntime" if device.type == "cpu" and looked["precision"] != "bf16" else "torch"
        elif engine == "onnxruntime" and device.type != "cpu":
            print(f"embed.engine: onnxruntime runs on the CPU here; torch runs the model on {device}", file=sys.stderr)
            engine = "torch"
        if engine == "onnxruntime":
            dtype = None
        elif looked["precision"] == "auto":
            dtype = torch.bfloat16 if native_bf16(device) else None
        else:
            dtype = autocast_dtype(looked["precision"], device, "embed.precision")
        return cls(tuple(looked["scales"]), looked["flip"], dtype, engine)

    @property
    def count(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)


def views(images, scales=(1.0,), flip=False):
    """The looks at a batch that a multi-scale descriptor averages (cirtorch's extract_ms): the batch resized by
    each scale (bilinear; antialiased when shrinking), each followed by its mirror image when flip."""
    for scale in scales:
        scaled = images
        if scale != 1:
            shrinking = scale < 1
            scaled = F.interpolate(
                images, scale_factor=scale, mode="bilinear", align_corners=False, antialias=shrinking
            )
        yield scaled
        if flip:
            yield scaled.flip(-1)


class PreLogits(torch.nn.Module):
    """A model's embedding, the pre-logits of forward_head: what ONNX Runtime runs of it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


@contextmanager
def output_silenced():
    """This process's stdout and stderr (its file descriptors) to /dev/null: torch's ONNX exporter prints its whole
    graph from C++ when it meets an operator it cannot export (its log is always on: torch.onnx's
    setup_onnx_logging tests the function _jit_is_onnx_log_enabled, not what it returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


class OnnxPreLogits:
    """PreLogits exported to ONNX (any batch size and side, for the looks' scales) and run by ONNX Runtime on the
    CPU, in fp32 as torch runs it; called on a batch of images, it returns their pre-logits as torch would.
    kept: where the export is kept from one run to the next (the embedding cache's folder of this model and
    looks), or None: exported anew."""

    def __init__(self, model, image_size: int, kept: Path | None = None):
        import onnxruntime

        with tempfile.TemporaryDirectory() as folder:
            path = Path(kept or folder) / "model.onnx"
            if not path.is_file():
                export_pre_logits(model, image_size, path)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    rows_per_run = 16  # ONNX Runtime's CPU kernels run a few images at a time a third faster than 64 (they stay in
    # cache), with the same numbers: each image's pre-logits do not depend on the others in its batch

    def __call__(self, images):
        images = images.float().contiguous().numpy()
        runs = range(0, len(images), self.rows_per_run)
        found = [self.session.run(None, {"images": images[start : start + self.rows_per_run]})[0] for start in runs]
        return torch.from_numpy(np.concatenate(found))


def export_pre_logits(model, image_size: int, path: Path) -> None:
    """The model's PreLogits as an ONNX file at path (written beside it and renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, warnings.catch_warnings(), output_silenced():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings: tests check the graph against torch
        torch.onnx.export(PreLogits(model).eval(), torch.zeros(2, 3, image_size, image_size), temporary,
                          input_names=["images"], output_names=["pre_logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}})  # fmt: skip


@torch.no_grad()
def embed(model, loader, device, desc="embed", batches_per_result=32, looks=Looks(), classify=True, engine=None):
    """The L2-normalised embedding (forward_head with pre_logits) of each image, with the classifier's top-1
    class index and confidence from the same pass: yields (embeddings, classes, confidences) as numpy arrays,
    one group of batches at a time in loader order, so a caller can write millions of them without holding
    them (and a GPU is not stalled by a copy after every batch). classify False: classes -1 and confidences 0,
    the head not run (it costs per image as many products as the classes it names: at GLDv2 scale, with its
    classes, more than the backbone's at 64 px).

    With several scales or flip (looks) the embedding is the L2-normalised mean of every view's L2-normalised
    embedding (Radenović et al.'s multi-scale descriptor), and the classifier reads the mean of their pre-logits.
    engine: what computes a view's pre-logits in place of the model (an OnnxPreLogits), or None: the model."""
    model.eval()
    transform = model_input(model, loader.dataset, device, channels_last=engine is None)  # ONNX Runtime's is NCHW
    batches = device_batches(loader, transform, device, beside=engine is not None)
    progress = tqdm(batches, total=len(loader), desc=desc, unit="batch", leave=False, mininterval=1, disable=not desc)
    pending = []
    for number, (images, _, _) in enumerate(progress, 1):
        descriptors, pre_logits = 0, 0
        for view in views(images, looks.scales, looks.flip):
            if engine is not None:
                embedding = engine(view)
            else:
                with torch.autocast(device.type, dtype=looks.dtype or torch.float32, enabled=looks.dtype is not None):
                    embedding = model.forward_head(model.forward_features(view), pre_logits=True).float()
            descriptors = descriptors + F.normalize(embedding, dim=1)
            pre_logits = pre_logits + embedding
        if classify:
            with torch.autocast(device.type, dtype=looks.dtype or torch.float32, enabled=looks.dtype is not None):
                logits = model.head(pre_logits / looks.count)
            confidence, predicted = model.head.confidence(logits.float())
        else:
            predicted = torch.full((len(images),), -1, dtype=torch.int64, device=images.device)
            confidence = torch.zeros(len(images), device=images.device)
        pending.append((F.normalize(descriptors, dim=1), predicted, confidence))
        if number % batches_per_result == 0 or number == len(loader):
            yield tuple(torch.cat(part).cpu().numpy() for part in zip(*pending, strict=True))
            pending = []


def save_model(path, model, variant: Variant, decode: str, labels: LabelEncoding, run_id: str) -> None:
    """The weights with what inference needs to use them as trained (TrainedModel.load reads it back)."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "variant": variant.model_dump(),
        "decode": decode,
        "landmark_ids": labels.landmark_ids.tolist(),
        "class_images": labels.images.tolist(),
        "mlflow_run_id": run_id,
    }
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)


@dataclass
class TrainedModel:
    """A model.pt, loaded: the model in eval mode on its device, and what it was trained with."""

    model: torch.nn.Module
    variant: Variant
    decode: str
    labels: LabelEncoding
    mlflow_run_id: str
    device: torch.device
    engines: dict = field(default_factory=dict, repr=False)  # engine name -> what runs the model (engine_for)
    exports: Path | None = None  # where an engine's export of the model is kept between runs (None: nowhere)

    @classmethod
    def load(cls, path, device) -> "TrainedModel":
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"{path}: no such model; run `dvc repro` to train it") from None
        # a model saved before lr_schedule was a setting trained at a constant lr
        variant = parse(Variant, {"lr_schedule": "none"} | checkpoint["variant"], f"{path} variant")
        labels = LabelEncoding(checkpoint["landmark_ids"], checkpoint["class_images"])
        model = create_model(variant, len(labels), pretrained="none")
        model.load_state_dict(checkpoint["state_dict"])
        model = model.to(device).eval()
        return cls(model, variant, checkpoint["decode"], labels, checkpoint["mlflow_run_id"], device)

    def dataset(self, images_root, split, ids, targets=None) -> ImageDataset:
        """The images of ids at this model's size, decoded as its training images were."""
        return image_dataset(self.variant.image_size, images_root, split, ids, targets, self.decode)

    def embed(self, images_root, split, ids, runtime: Runtime, looks: Looks, desc="embed", classify=True):
        """embed() over the images of ids, batched and loaded as `runtime` says, looked at as `looks`, with the
        classifier's answers or not."""
        loader = self._loader(self.dataset(images_root, split, ids), runtime)
        yield from embed(self.model, loader, self.device, desc, looks=looks, classify=classify,
                         engine=self.engine_for(looks))  # fmt: skip

    def engine_for(self, looks: Looks):
        """What embed() runs this model by for looks: None (torch), or its OnnxPreLogits, exported once per model.
        A model the exporter or ONNX Runtime cannot take is said in one line and run by torch."""
        if looks.engine != "onnxruntime":
            return None
        if "onnxruntime" not in self.engines:
            try:
                self.engines["onnxruntime"] = OnnxPreLogits(self.model, self.variant.image_size, self.exports)
            except Exception as error:  # the exporter and the runtime raise many kinds; torch can run it still
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                print(f"embed: onnxruntime cannot run this {self.variant.backbone} ({reason}); torch runs it",
                      file=sys.stderr)  # fmt: skip
                self.engines["onnxruntime"] = None
        return self.engines["onnxruntime"]

    def _loader(self, dataset, runtime: Runtime):
        workers = loader_workers(runtime.num_workers, self.device)
        return make_loader(dataset, runtime.inference_batch_size, workers, self.device)

    @property
    def embedding_size(self) -> int:
        return self.model.neck.out_features
