"""Stage saliency: vanilla-backprop saliency maps of every variant on a fixed set of dev images (Figure 6).

Usage: python -m stages.saliency MODELS_DIR IMAGES_DIR DEV_CSV OUT_PNG
"""

import io
import sys
from pathlib import Path

import numpy as np
import torch

from landmark.data.images import open_rgb
from landmark.data.layout import read_labels
from landmark.data.loading import collate, model_input
from landmark.data.shards import image_reader
from landmark.errors import exits_cleanly
from landmark.inference import TrainedModel
from landmark.saliency import plot_saliency_grid, saliency_maps
from landmark.settings import load_settings


@exits_cleanly
def main(models_dir, images_dir, dev_csv, out_png):
    settings = load_settings()
    saliency = settings.saliency
    dev = read_labels(dev_csv).sort_values("id")
    chosen = dev.sample(n=min(saliency.images, len(dev)), random_state=saliency.seed)["id"].tolist()
    maps = {}
    for name in settings.variants:
        trained = TrainedModel.load(Path(models_dir) / name / "model.pt", torch.device("cpu"))
        dataset = trained.dataset(images_dir, "train", chosen)
        images, _, keys = collate([dataset[index] for index in range(len(chosen))])
        maps[name] = saliency_maps(trained.model, model_input(trained.model, dataset, trained.device)(images, keys))
    reader = image_reader(images_dir, "train", chosen)
    pictures = [np.asarray(open_rgb(io.BytesIO(reader.read(index)))) for index in range(len(chosen))]
    plot_saliency_grid(pictures, maps, out_png)
    print(f"saliency: {len(chosen)} dev images x {len(maps)} variants -> {out_png}")


if __name__ == "__main__":
    main(*sys.argv[1:])
