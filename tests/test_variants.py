"""Every variant of params.yaml builds, and training lowers its loss on a fixed tiny batch."""

from pathlib import Path

import pytest
import torch
import yaml

from landmark.models import create_model
from landmark.settings import parse_params

VARIANTS = parse_params(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())).variants


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_loss_falls_on_a_fixed_batch(name):
    torch.manual_seed(0)
    model = create_model(VARIANTS[name], num_classes=3, where=f"variants.{name}")
    images, targets = torch.randn(6, 3, 40, 40), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
