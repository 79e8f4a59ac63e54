import huggingface_hub
import pytest
import timm
import torch

from landmark.errors import UserError
from landmark.models import create_model
from landmark.models.backbones import create_backbone
from tests.test_resume import VARIANT, typed


def variant(**overrides):
    return typed(VARIANT | {"backbone": "resnet18"} | overrides)[0]


@pytest.mark.parametrize("backbone", ["resnet50", "legacy_xception"])
def test_paper_backbones_give_one_logit_per_class(backbone):
    model = create_model(variant(backbone=backbone), num_classes=7)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("key", ["pooling", "attention", "head"])
def test_unknown_part_names_the_params_key(key):
    with pytest.raises(UserError, match=rf"variants.broken.{key}: unknown {key} 'nope'"):
        create_model(variant(**{key: "nope"}), 3, where="variants.broken")


def test_unknown_backbone_names_the_params_key():
    with pytest.raises(UserError, match=r"variants.v.backbone: unknown timm model 'resnet5000'"):
        create_model(variant(backbone="resnet5000"), 3, where="variants.v")


def test_first_85_xception_tensors_frozen_and_unchanged_by_a_step():
    model = create_model(variant(backbone="legacy_xception", frozen_tensors=85), num_classes=3)
    named = list(model.backbone.named_parameters())
    assert named[84][0] == "block7.rep.7.pointwise.weight"
    assert not any(parameter.requires_grad for _, parameter in named[:85])
    assert all(parameter.requires_grad for _, parameter in named[85:])
    before = [parameter.detach().clone() for _, parameter in named]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 48, 48)), torch.tensor([0, 1])).backward()
    optimizer.step()
    assert all(parameter.grad is None for _, parameter in named[:85])
    assert all(torch.equal(old, parameter) for old, (_, parameter) in zip(before[:85], named[:85], strict=True))
    assert not torch.equal(before[-1], named[-1][1])


def test_pretrained_weights_from_a_local_file(tmp_path):
    reference = timm.create_model("resnet18", num_classes=1000)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    backbone, config = create_backbone("resnet18", str(tmp_path / "resnet18.pth"), where="variants.v")
    assert torch.equal(backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.layer4[1].bn2.running_mean, reference.layer4[1].bn2.running_mean)
    assert config["mean"] == (0.485, 0.456, 0.406)


def test_pretrained_errors_name_the_params_key(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"variants.v.pretrained: .*missing.pth is not a file"):
        create_backbone("resnet18", str(tmp_path / "missing.pth"), where="variants.v")
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    with pytest.raises(UserError, match=r"variants.v.pretrained: .*junk.pth does not hold resnet18 weights"):
        create_backbone("resnet18", str(tmp_path / "junk.pth"), where="variants.v")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set the constant
    with pytest.raises(UserError, match=r"variants.v.pretrained: cannot download resnet18 weights"):
        create_backbone("resnet18", "hub", where="variants.v")
