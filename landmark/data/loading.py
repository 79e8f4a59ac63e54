"""From JPEG files to model input. Loader workers only read (and, by default, decode and resize) images; the
paper's augmentation (random shifts, scaling, horizontal flips) and the normalisation run batched on the
training device, so a GPU does not wait on per-image Python work in the workers.

Two ways to decode, chosen by `decode`:
- `worker`: workers decode with PIL (JPEG draft mode for big photos) and resize to uint8 tensors; batches are
  stacked in the worker, one shared-memory handle per batch.
- `device`: workers return each file's bytes; the batch is decoded on the device (nvJPEG on a GPU, libjpeg-turbo
  on the CPU) and resized there. Files nvJPEG cannot take (not JPEG, CMYK, EXIF-rotated) are decoded by the
  worker instead, so every image the filter stage accepted still loads.
"""

import contextlib
import functools
import io
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from landmark.data.images import open_rgb
from landmark.data.shards import image_reader

EXIF_ORIENTATION = 0x0112


def _decode_with_pil(blob: bytes, size: int) -> torch.Tensor:
    """Any image file's bytes as upright RGB uint8, 3 × size × size (the worker path, and the fallback). The
    memory stays as PIL decodes it, size × size × 3, so a batch of them is stacked with plain copies."""
    image = open_rgb(io.BytesIO(blob), target_size=size)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _plain_jpeg(blob: bytes) -> bool:
    """Whether nvJPEG decodes these bytes to the image as PIL would see it: a baseline RGB/gray JPEG, upright."""
    if blob[:2] != b"\xff\xd8":
        return False
    try:
        with Image.open(io.BytesIO(blob)) as image:
            return image.mode in ("RGB", "L") and image.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # undecodable headers are PIL's to report, on the worker path
        return False


class ImageDataset(torch.utils.data.Dataset):
    """The images of a reader (landmark.data.shards: packed or loose), with optional class indices.

    Items are (image, target, key). A key is `epoch · len + index` (plain indices are epoch 0); the augmentation
    of a key is drawn from (seed, epoch, index) on the device (DeviceTransform), so it is the same whichever worker
    loads it and whether or not training was interrupted and resumed. The image is a uint8 tensor of
    image_size × image_size, or with decode="device" the file's bytes (see the module docstring).
    """

    def __init__(self, reader, targets=None, image_size: int = 224, decode: str = "worker"):
        if decode not in ("worker", "device"):
            raise ValueError(f"decode must be worker or device, not {decode!r}")
        self.reader = reader
        self.targets = np.full(len(reader), -1, dtype=np.int64) if targets is None else np.asarray(targets)
        self.image_size = int(image_size)
        self.decode = decode

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, key):
        index = int(key) % len(self.reader)
        blob = self.reader.read(index)
        if self.decode == "device" and _plain_jpeg(blob):
            return blob, int(self.targets[index]), int(key)
        return _decode_with_pil(blob, self.image_size), int(self.targets[index]), int(key)


def collate(samples):
    """(images, targets, keys): images stacked into one uint8 N × 3 × H × W tensor, or a list when some are still
    bytes. The batch is channels_last in memory, as the model takes it: each image's H × W × 3 memory is copied
    whole, where stacking them channels-first would gather every byte; and default_collate stacks straight into
    shared memory in a worker, saving a copy into it when the batch is queued (docs/benchmarks.md, "Training
    speed": what it is worth, by benchmarks/loader.py)."""
    images, targets, keys = zip(*samples, strict=True)
    if all(isinstance(image, torch.Tensor) for image in images):
        images = default_collate([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)
    else:
        images = list(images)
    return images, torch.tensor(targets), torch.tensor(keys)


@functools.cache
def _decode_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def _decode_jpegs(data, device: torch.device):
    """torchvision's decode_jpeg, made safe on a GPU. Its CUDA decoder allocates the outputs on the current stream
    but writes them from a stream of its own that does not wait for the current one, so it can overwrite memory
    that kernels still queued there are about to read (seen here as a device-side assert in the training loss;
    pytorch/vision#9606). Decoding under a stream that runs nothing else hands the decoder only blocks whose
    uses have finished: each output is marked as used by the consuming stream, so the allocator does not give
    it back to the decoder before that use is done."""
    if device.type != "cuda":
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    consumer, decoding = torch.cuda.current_stream(device), _decode_stream(device)
    decoding.synchronize()  # the previous batch's decode, long done by now: its buffers are free to reuse
    with torch.cuda.stream(decoding):
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    consumer.wait_stream(decoding)
    for image in images if isinstance(images, list) else [images]:
        image.record_stream(consumer)
    return images


def _decode_one(data: torch.Tensor, device, image_size: int) -> torch.Tensor:
    try:
        return _decode_jpegs(data, device)
    except RuntimeError:
        return _decode_with_pil(data.numpy().tobytes(), image_size)


def decode_images(images, image_size: int, device: torch.device) -> torch.Tensor:
    """A batch from collate as uint8 N × 3 × size × size on device: JPEG bytes decoded there, then resized."""
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    blobs = [index for index, image in enumerate(images) if isinstance(image, bytes)]
    decoded = list(images)
    if blobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec
            data = [torch.frombuffer(bytearray(images[index]), dtype=torch.uint8) for index in blobs]
            try:
                results = _decode_jpegs(data, device)
            except RuntimeError:  # one file nvJPEG refuses fails the whole call: decode that batch one by one
                results = [_decode_one(blob, device, image_size) for blob in data]
            for index, image in zip(blobs, results, strict=True):
                decoded[index] = image
    # Resized in one call per distinct shape: GLDv2's 256-px files come out as one batched interpolate.
    by_shape = {}
    for index, image in enumerate(decoded):
        by_shape.setdefault(tuple(image.shape), []).append(index)
    groups = []
    for shape, indices in by_shape.items():
        group = torch.stack([decoded[index].to(device, non_blocking=True) for index in indices])
        if shape[-2:] != (image_size, image_size):
            group = F.interpolate(group.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
            group = group.round_().clamp_(0, 255).to(torch.uint8)
        groups.append(group)
    if len(groups) == 1:
        return groups[0]
    # Back in batch order by a gather on the device (indexing with a Python list would copy it from pageable
    # memory, which waits for every queued kernel).
    order = torch.tensor([index for indices in by_shape.values() for index in indices])
    where = torch.empty_like(order)
    where[order] = torch.arange(len(order))
    if device.type == "cuda":
        where = where.pin_memory()
    return torch.cat(groups).index_select(0, where.to(device, non_blocking=True))


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014): a bijective mix of uint64s, vectorised."""
    values = values + np.uint64(0x9E3779B97F4A7C15)
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def key_uniforms(keys, dataset_size: int, seed: int, count: int) -> np.ndarray:
    """len(keys) × count uniforms in [0, 1) that depend on (seed, epoch, index) of each key alone: a counter-based
    draw, so a batch of any composition costs a few vector operations instead of one generator per image."""
    keys = np.asarray(keys, dtype=np.int64)
    epochs, indices = np.divmod(keys, dataset_size)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        state = _splitmix64(_splitmix64(np.full(len(keys), seed, dtype=np.uint64)) ^ epochs.astype(np.uint64))
        state = _splitmix64(state ^ _splitmix64(indices.astype(np.uint64)))
        draws = _splitmix64(state[:, None] + np.arange(1, count + 1, dtype=np.uint64)[None, :])
    return (draws >> np.uint64(11)).astype(np.float64) * 2.0**-53


def augmentation_matrices(keys, dataset_size: int, seed: int, augmentation) -> torch.Tensor:
    """N × 2 × 3 affine_grid matrices: a random shift of up to `augmentation.translate` of the side, a random
    zoom in `augmentation.scale` and a horizontal flip with probability `augmentation.flip`, each drawn from
    (seed, epoch, index) of the key alone."""
    draw = key_uniforms(keys, dataset_size, seed, 4)
    shift_x, shift_y = ((draw[:, :2] * 2 - 1) * augmentation.translate * 2).T  # affine_grid spans 2 per side
    smallest, largest = augmentation.scale
    zoom = smallest + draw[:, 2] * (largest - smallest)
    flip = np.where(draw[:, 3] < augmentation.flip, -1.0, 1.0)
    # Output pixel o comes from input (flip · o_x − shift_x) / zoom, (o_y − shift_y) / zoom.
    matrices = np.zeros((len(draw), 2, 3))
    matrices[:, 0, 0], matrices[:, 0, 2] = flip / zoom, -shift_x / zoom
    matrices[:, 1, 1], matrices[:, 1, 2] = 1.0 / zoom, -shift_y / zoom
    return torch.from_numpy(matrices).float()


class DeviceTransform:
    """Batched on the device: decode (when the loader returned bytes), augment (training only: given an
    augmentation and its seed), normalise with the backbone's mean and std, in memory_format (torch's
    channels_last, or contiguous_format for ONNX Runtime). Call with a batch from collate: images, keys."""

    def __init__(self, image_size: int, mean, std, device, augmentation=None, augment_seed=None, dataset_size=0,
                 memory_format=torch.channels_last):  # fmt: skip
        self.image_size, self.device = int(image_size), torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.augmentation, self.augment_seed, self.dataset_size = augmentation, augment_seed, dataset_size
        self.memory_format = memory_format

    def __call__(self, images, keys) -> torch.Tensor:
        batch = decode_images(images, self.image_size, self.device)
        if self.augmentation is None:
            # laid out while still uint8 (a quarter of the bytes), then normalised in place: on a CPU every pass
            # and every fresh 40 MB batch costs as much as the model's first layers
            batch = batch.contiguous(memory_format=self.memory_format).float().div_(255)
            return batch.sub_(self.mean).div_(self.std)
        batch = batch.float().div_(255)
        matrices = augmentation_matrices(keys, self.dataset_size, self.augment_seed, self.augmentation)
        if self.device.type == "cuda":  # from pageable memory the copy would wait for every queued kernel
            matrices = matrices.pin_memory()
        matrices = matrices.to(self.device, non_blocking=True)
        grid = F.affine_grid(matrices, list(batch.shape), align_corners=False)
        batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        batch = (batch - self.mean) / self.std
        return batch.contiguous(memory_format=self.memory_format)


def device_batches(loader, transform, device: torch.device, beside: bool = False):
    """The loader's batches as (model input, targets, keys), inputs and targets on device, keys as they came,
    each batch prepared one batch ahead of the one handed out; with beside, on a CPU without loader workers, in a
    thread beside the caller (prepared_beside: for a model that ONNX Runtime runs, whose threads are not torch's).

    On a GPU that preparation (copy, decode, augment) runs on a stream of its own, so it overlaps the caller's
    step on the batch before instead of waiting in line behind that step's kernels on the caller's stream: a
    256-px batch of 256 is 50 MB to copy. The caller's stream waits for each batch's own work only (an event),
    and the batch is marked as used there so its memory is not reused too early."""
    side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def staged(batch):
        images, targets, keys = batch
        with torch.cuda.stream(side) if side else contextlib.nullcontext():
            inputs, targets = transform(images, keys), targets.to(device, non_blocking=True)
        return inputs, targets, keys, side.record_event() if side else None

    def handed_over(ready):
        inputs, targets, keys, done = ready
        if side:
            consumer = torch.cuda.current_stream(device)
            consumer.wait_event(done)
            inputs.record_stream(consumer)
            targets.record_stream(consumer)
        return inputs, targets, keys

    batches = iter(loader)
    if beside and side is None and not getattr(loader, "num_workers", 0):  # no worker: a loader, or any iterable
        yield from prepared_beside(batches, staged)
        return
    first = next(batches, None)
    if first is None:
        return
    ahead = staged(first)
    for batch in batches:
        ready, ahead = ahead, staged(batch)
        yield handed_over(ready)
    yield handed_over(ahead)


def prepared_beside(batches, staged):
    """Each batch read, decoded and prepared (staged) in a thread of its own while the caller works on the one
    before. Decoding and ONNX Runtime release the GIL, and ONNX Runtime's threads leave a core idle often enough
    (between layers) that the overlap pays on 2 cores, where a worker process, with its start and its copies
    through shared memory, does not (docs/benchmarks.md, "Inference"). Not for a torch model: its threads and
    the preparation's torch threads would share the same cores and slow each other (training on CPU-2: 2.5 to
    1.7 steps a second)."""

    def next_staged():
        batch = next(batches, None)
        return None if batch is None else staged(batch)

    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(next_staged)
        while (ready := ahead.result()) is not None:
            ahead = pool.submit(next_staged)
            inputs, targets, keys, _ = ready
            yield inputs, targets, keys


class WaitClock:
    """An iterator of batches that adds up, in `seconds`, the wall time its callers spent waiting in next(): near
    none when the GPU (or the CPU's compute) sets the pace, much when the loader does. Used by the train stage's
    throughput figures and by benchmarks/gpu_check.py."""

    def __init__(self, batches):
        self.batches, self.seconds = batches, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        started = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.seconds += time.perf_counter() - started


class EpochBatches(torch.utils.data.Sampler):
    """Endless batches of keys (epoch · size + index): each epoch a permutation drawn from (seed, epoch), cut into
    size // batch_size full batches. Starting at batch `start` gives exactly the batches an uninterrupted run
    would have drawn from there, so training resumes where it stopped. `part` keeps one process's slice of each
    batch under DDP."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, part: slice = slice(None)):
        self.size, self.batch_size, self.seed, self.start = size, min(batch_size, size), seed, start
        self.part = part

    def __iter__(self):
        per_epoch = self.size // self.batch_size
        batch, epoch, order = self.start, None, None
        while True:
            batch_epoch, offset = divmod(batch, per_epoch)
            if batch_epoch != epoch:
                epoch = batch_epoch
                order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            indices = order[offset * self.batch_size : (offset + 1) * self.batch_size]
            yield (epoch * self.size + indices[self.part]).tolist()
            batch += 1


def image_dataset(image_size: int, images_root, split, ids, targets=None, decode: str = "worker"):
    """The images of ids from images_root: packed shards (the pack stage's output) or the Kaggle layout."""
    return ImageDataset(image_reader(images_root, split, ids), targets, image_size=image_size, decode=decode)


def model_input(model, dataset, device, augmentation=None, augment_seed=None, channels_last=True) -> DeviceTransform:
    """The batched device-side transform that turns this dataset's batches into the model's input; with an
    augmentation (landmark.settings.Augmentation) and its seed, training's. channels_last: torch's layout for
    the model; False: plain NCHW (what ONNX Runtime reads)."""
    config = model.data_config
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return DeviceTransform(
        dataset.image_size, config["mean"], config["std"], device, augmentation, augment_seed, len(dataset), layout
    )
