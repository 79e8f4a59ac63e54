"""timm backbones, with pretrained weights resolved in one place."""

import pickle
from pathlib import Path

import timm
from timm.data import resolve_data_config

from landmark.errors import UserError


def create_backbone(name: str, pretrained: str, where: str):
    """A timm model without classifier or pooling, so `forward_features` gives the spatial feature map.

    pretrained: `none` (random init), `hub` (timm's download from the Hugging Face hub), or a path to a local
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
            )
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"{where}.pretrained: {path} is not a file; use none, hub or a path to a weights file")
        try:
            model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path.resolve())), **options
            )
        except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise UserError(f"{where}.pretrained: {path} does not hold {name} weights ({str(error).splitlines()[0]})")
    return model, resolve_data_config({}, model=model)


def freeze_first_tensors(module, count: int) -> list:
    """Stop gradients to the first `count` parameter tensors (the paper froze 85 of Xception's); returns their
    names."""
    named = list(module.named_parameters())
    for _, parameter in named[:count]:
        parameter.requires_grad_(False)
    return [name for name, _ in named[:count]]
