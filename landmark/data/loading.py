"""Datasets that read the Kaggle layout's JPEGs, with the paper's augmentation (crop, flip, shifts)."""

import numpy as np
import torch
from torchvision.transforms import v2

from landmark.data.images import open_rgb
from landmark.data.layout import image_path


def make_transform(image_size: int, mean, std, train: bool):
    """Resize to `image_size`; for training, the paper's random shifts and horizontal flips."""
    steps = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train:
        steps += [v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class ImageFolderCSV(torch.utils.data.Dataset):
    """Images `root/split/a/b/c/<id>.jpg` with optional class indices.

    A key is `epoch · len + index` (plain indices are epoch 0). With an augment_seed, the random augmentation
    of each key is drawn from (augment_seed, epoch, index) alone, so it is the same whichever worker loads it
    and whether or not training was interrupted and resumed.
    """

    def __init__(self, root, split: str, ids, targets=None, transform=None, augment_seed=None, target_size=None):
        self.paths = [image_path(root, split, image_id) for image_id in ids]
        self.target_size = target_size
        self.targets = np.full(len(self.paths), -1, dtype=np.int64) if targets is None else np.asarray(targets)
        self.transform = transform
        self.augment_seed = augment_seed

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, key):
        epoch, index = divmod(int(key), len(self.paths))
        image = open_rgb(self.paths[index], target_size=self.target_size)
        if self.augment_seed is None:
            return self.transform(image), int(self.targets[index])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.augment_seed, epoch, index)) % 2**63)
            return self.transform(image), int(self.targets[index])


class EpochBatches(torch.utils.data.Sampler):
    """Endless batches of keys (epoch · size + index): each epoch a permutation drawn from (seed, epoch), cut into
    size // batch_size full batches. Starting at batch `start` gives exactly the batches an uninterrupted run
    would have drawn from there, so training resumes where it stopped."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0):
        self.size, self.batch_size, self.seed, self.start = size, min(batch_size, size), seed, start

    def __iter__(self):
        per_epoch = self.size // self.batch_size
        batch, epoch, order = self.start, None, None
        while True:
            batch_epoch, offset = divmod(batch, per_epoch)
            if batch_epoch != epoch:
                epoch = batch_epoch
                order = torch.randperm(
                    self.size, generator=torch.Generator().manual_seed(hash((self.seed, epoch)) % 2**63)
                )
            indices = order[offset * self.batch_size : (offset + 1) * self.batch_size]
            yield (epoch * self.size + indices).tolist()
            batch += 1
