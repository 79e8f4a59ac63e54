"""Every variant of params.yaml builds, and its own training step (its loss, Adam at its lr) lowers that loss on a
fixed tiny batch."""

from pathlib import Path

import pytest
import torch
import yaml

from landmark.models import create_loss, create_model
from landmark.settings import parse_params
from landmark.train import training_step

VARIANTS = parse_params(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())).variants


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_loss_falls_on_a_fixed_batch(name):
    torch.manual_seed(0)
    variant = VARIANTS[name]
    model = create_model(variant, num_classes=3, where=f"variants.{name}", pretrained="none")
    loss_of = create_loss(variant, class_images=[4, 2, 1], where=f"variants.{name}")  # margins by class size
    size = variant.image_size
    images, targets = torch.randn(6, 3, size, size), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=variant.lr)
    step = training_step(model, loss_of, optimizer, None, torch.device("cpu"))
    losses = [step(images, targets)[0].item() for _ in range(5)]
    assert (
        type(loss_of).__name__
        == {"cross_entropy": "CrossEntropy", "arcface": "ArcFace"}[
            variant.loss if isinstance(variant.loss, str) else variant.loss["name"]
        ]
    )
    assert losses[-1] < losses[0], losses
