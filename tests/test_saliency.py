import numpy as np
import torch
from PIL import Image
from torch import nn

from landmark.saliency import plot_saliency_grid, saliency_maps


def test_saliency_of_a_linear_model_is_its_top_class_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images = torch.randn(2, 3, 4, 4)
    maps = saliency_maps(model, images)
    top = model(images).argmax(dim=1)
    for index in range(2):
        weights = model[1].weight[top[index]].detach().view(3, 4, 4)
        assert np.allclose(maps[index], weights.abs().amax(dim=0).numpy())


def test_grid_is_a_png(tmp_path):
    pictures = [np.zeros((8, 8, 3), dtype=np.uint8)] * 2
    plot_saliency_grid(pictures, {"a": np.random.rand(2, 4, 4), "b": np.random.rand(2, 4, 4)}, tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]
