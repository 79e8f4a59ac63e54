"""The data path: workers read, the device decodes, augments and normalises; both decode paths agree."""

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from landmark.data.layout import image_path, read_labels
from landmark.data.loading import (
    DeviceTransform,
    EpochBatches,
    ImageDataset,
    augmentation_matrices,
    collate,
    decode_images,
    device_batches,
    key_uniforms,
)
from landmark.data.shards import FolderReader
from landmark.runtime import make_loader
from landmark.settings import Augmentation
from tests.test_faults import salted_images

PAPER = Augmentation(translate=0.1, scale=(0.9, 1.1), flip=0.5)


def batch_of(dataset, keys):
    return collate([dataset[key] for key in keys])


def write_cases(root, cases):
    ids = []
    for number, (case, data) in enumerate(cases.items()):
        image_id = f"{number:x}" * 3 + case[:13].ljust(13, "0")
        path = image_path(root, "train", image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        ids.append(image_id)
    return ids


def test_device_decoding_matches_worker_decoding_for_every_usable_kind_of_file(tmp_path):
    usable = {case: data for case, (data, reason) in salted_images().items() if reason is None}
    ids = write_cases(tmp_path, usable)
    on_worker = ImageDataset(FolderReader(tmp_path, "train", ids), image_size=24, decode="worker")
    on_device = ImageDataset(FolderReader(tmp_path, "train", ids), image_size=24, decode="device")
    kinds = {case: type(on_device[index][0]).__name__ for index, case in enumerate(usable)}
    # nvJPEG gets the plain JPEGs; PNG, WebP, CMYK and EXIF-rotated files are decoded in the worker instead
    assert kinds == {
        "gray": "bytes", "cmyk": "Tensor", "rgba_png": "Tensor", "palette": "Tensor", "webp": "Tensor",
        "rotated": "Tensor", "tiny": "bytes",
    }  # fmt: skip
    normalise = DeviceTransform(24, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu")
    keys = list(range(len(ids)))
    worker_batch = normalise(*batch_of(on_worker, keys)[::2])
    device_batch = normalise(*batch_of(on_device, keys)[::2])
    assert worker_batch.shape == device_batch.shape == (len(ids), 3, 24, 24)
    # the two resize paths (PIL bilinear, torch antialiased bilinear) agree to a couple of grey levels
    assert (worker_batch - device_batch).abs().mean() < 2 / 255
    rotated = keys[list(usable).index("rotated")]
    assert torch.equal(worker_batch[rotated], device_batch[rotated])


def test_the_projects_augmentation_mirrors_and_moves_images_as_its_matrices_say():
    """Through DeviceTransform, training's transform: a flip-only augmentation mirrors the batch exactly; a
    shift-only one moves a point by the shift its matrix holds (augmentation_matrices: 2 units per side)."""
    image = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    image[..., 6, 5] = 255
    key = torch.tensor([0])
    mirroring = Augmentation(translate=0.0, scale=(1.0, 1.0), flip=1.0)
    mirrored = DeviceTransform(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu", mirroring, 0, dataset_size=1)(image, key)
    assert torch.allclose(mirrored, image.float().div(255).flip(-1), atol=1e-5)
    shifting = Augmentation(translate=0.2, scale=(1.0, 1.0), flip=0.0)
    moved = DeviceTransform(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu", shifting, 0, dataset_size=1)(image, key)[0, 0]
    matrix = augmentation_matrices(key, 1, 0, shifting)[0]
    assert matrix[0, 2].abs() > 0.05 and matrix[1, 2].abs() > 0.05  # this key's draw moves it both ways
    places = torch.arange(16, dtype=torch.float32)
    across, down = (moved.sum(0) * places).sum() / moved.sum(), (moved.sum(1) * places).sum() / moved.sum()
    # the matrix maps an output place to an input place: content moves by minus its offset, 8 pixels a unit here
    assert across == pytest.approx(5 - 8 * matrix[0, 2].item(), abs=1e-3)
    assert down == pytest.approx(6 - 8 * matrix[1, 2].item(), abs=1e-3)


def test_augmentation_depends_on_seed_epoch_and_index_only():
    size = 50
    first = augmentation_matrices([3, 7, size + 3], size, 0, PAPER)
    again = augmentation_matrices([size + 3, 3], size, 0, PAPER)  # other batch, other order
    assert torch.equal(first[0], again[1]) and torch.equal(first[2], again[0])
    assert not torch.equal(first[0], first[2])  # the same image in the next epoch is augmented afresh
    assert not torch.equal(first[0], augmentation_matrices([3], size, 1, PAPER)[0])
    uniforms = key_uniforms(range(4000), 4000, seed=0, count=4)
    assert np.allclose(uniforms.mean(0), 0.5, atol=0.02) and np.allclose(uniforms.std(0), 12**-0.5, atol=0.01)
    assert np.abs(np.corrcoef(uniforms.T) - np.eye(4)).max() < 0.05
    many = augmentation_matrices(range(4000), 4000, 0, PAPER).numpy()
    zoom = 1 / many[:, 1, 1]
    assert zoom.min() >= 0.9 and zoom.max() <= 1.1
    assert 0.45 < (many[:, 0, 0] < 0).mean() < 0.55  # flips half the images
    assert np.abs(many[:, :, 2] * zoom[:, None]).max() <= 0.2  # shifts of at most 10% of the side


def test_augmentation_follows_its_params():
    wider = augmentation_matrices(range(4000), 4000, 0, Augmentation(translate=0.3, scale=(0.5, 2.0), flip=0.2))
    zoom = 1 / wider[:, 1, 1].numpy()
    assert 0.5 <= zoom.min() < 0.55 and 1.95 < zoom.max() <= 2.0
    assert 0.17 < (wider[:, 0, 0] < 0).float().mean() < 0.23
    shift = np.abs(wider[:, :, 2].numpy() * zoom[:, None])
    assert 0.55 < shift.max() <= 0.6  # 30% of the side: 0.6 in affine_grid's units
    none = augmentation_matrices(range(100), 100, 0, Augmentation(translate=0.0, scale=(1.0, 1.0), flip=0.0))
    assert torch.equal(none, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(100, 2, 3))


def test_epoch_batches_are_permutations_and_resume_where_they_stopped():
    def take(sampler, count):
        batches = iter(sampler)
        return [next(batches) for _ in range(count)]

    batches = take(EpochBatches(10, 3, seed=4), 9)  # 3 full batches an epoch, the last image of each dropped
    for epoch in range(3):
        keys = sum(batches[3 * epoch : 3 * epoch + 3], [])
        assert len(set(keys)) == 9 and all(epoch * 10 <= key < epoch * 10 + 10 for key in keys)
    assert take(EpochBatches(10, 3, seed=4, start=5), 4) == batches[5:]
    assert take(EpochBatches(10, 3, seed=5), 3) != batches[:3]


def test_workers_give_the_same_batches_as_the_main_process(tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    dataset = ImageDataset(FolderReader(tiny_dataset, "train", train["id"]), np.zeros(len(train), dtype=np.int64), 32)
    transform = DeviceTransform(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu", PAPER, 0, dataset_size=len(train))

    def first_batches(workers):
        cpu = torch.device("cpu")
        loader = make_loader(dataset, 8, workers, cpu, EpochBatches(len(dataset), 8, seed=0))
        batches = device_batches(loader, transform, cpu)
        return [next(batches)[0] for _ in range(4)]

    for alone, with_workers in zip(first_batches(0), first_batches(2), strict=True):
        assert torch.equal(alone, with_workers)


@pytest.mark.parametrize("beside", [False, True])
def test_device_batches_hand_out_every_batch_once_in_order_while_preparing_the_next(beside):
    """The next batch is prepared before the caller works on this one; with beside, on a CPU without loader
    workers, in a thread beside the caller's work."""
    prepared, second_ready = [], threading.Event()

    def transform(images, keys):
        assert (threading.current_thread() is not threading.main_thread()) == beside
        prepared.append(int(keys[0]))
        if int(keys[0]) == 1:
            second_ready.set()
        return images * 2

    def loader(count):
        return [(torch.full((2, 3), float(n)), torch.tensor([n, n]), torch.tensor([n, n])) for n in range(count)]

    cpu = torch.device("cpu")
    batches = device_batches(loader(3), transform, cpu, beside)
    inputs, targets, keys = next(batches)
    assert torch.equal(inputs, torch.zeros(2, 3)) and targets.tolist() == [0, 0] and keys.tolist() == [0, 0]
    assert second_ready.wait(timeout=60) and prepared == [0, 1]  # prepared while the caller holds the first
    assert [int(keys[0]) for _, _, keys in batches] == [1, 2] and prepared == [0, 1, 2]
    assert [keys.tolist() for _, _, keys in device_batches(loader(1), transform, cpu, beside)] == [[0, 0]]
    assert list(device_batches(loader(0), transform, cpu, beside)) == []


def test_images_are_resized_to_the_asked_size_from_any_shape(tmp_path):
    files = {}
    for name, size in {"wide": (90, 30), "small": (8, 8)}.items():
        Image.new("RGB", size, (10, 200, 30)).save(tmp_path / f"{name}.jpg", "JPEG")
        files[name] = (tmp_path / f"{name}.jpg").read_bytes()
    ids = write_cases(tmp_path, files)
    for decode in ("worker", "device"):
        dataset = ImageDataset(FolderReader(tmp_path, "train", ids), image_size=16, decode=decode)
        batch = DeviceTransform(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "cpu")(*batch_of(dataset, [0, 1])[::2])
        assert batch.shape == (2, 3, 16, 16)
        assert torch.allclose(batch[:, :, 4:12, 4:12].mean((0, 2, 3)), torch.tensor([10, 200, 30]) / 255, atol=0.02)


def test_a_batch_of_mixed_sizes_keeps_each_image_in_its_place():
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 250), (0, 0, 0)]
    sizes = [(16, 16), (40, 20), (16, 16), (40, 20), (24, 24)]
    blobs = []
    for colour, size in zip(colours, sizes, strict=True):
        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
        blobs.append(buffer.getvalue())
    batch = decode_images(blobs, 8, torch.device("cpu")).float()
    assert batch.shape == (5, 3, 8, 8)
    assert torch.allclose(batch.mean((2, 3)), torch.tensor(colours, dtype=torch.float32), atol=6)


def test_a_worker_batch_is_channels_last_in_memory_and_transforms_as_a_channels_first_one(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for number in range(4):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, "JPEG")
        files[f"noise{number}"] = buffer.getvalue()
    dataset = ImageDataset(FolderReader(tmp_path, "train", write_cases(tmp_path, files)), image_size=24)
    images, _, keys = batch_of(dataset, range(4))
    decoded = [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in files.values()]
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2))
    for augmentation in (None, PAPER):
        transform = DeviceTransform(24, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "cpu", augmentation, 0, dataset_size=4)
        assert torch.equal(transform(images, keys), transform(images.contiguous(), keys))
