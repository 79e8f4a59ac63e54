"""Datasets that read the Kaggle layout's JPEGs, with the paper's augmentation (crop, flip, shifts)."""

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from landmark.data.layout import image_path


def make_transform(image_size: int, mean, std, train: bool):
    """Resize to `image_size`; for training, the paper's random shifts and horizontal flips."""
    steps = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train:
        steps += [v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class ImageFolderCSV(torch.utils.data.Dataset):
    """Images `root/split/a/b/c/<id>.jpg` with optional class indices."""

    def __init__(self, root, split: str, ids, targets=None, transform=None):
        self.paths = [image_path(root, split, image_id) for image_id in ids]
        self.targets = np.full(len(self.paths), -1, dtype=np.int64) if targets is None else np.asarray(targets)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
        return self.transform(image), int(self.targets[index])
