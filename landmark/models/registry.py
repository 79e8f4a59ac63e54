"""Build a model from a variant's params: backbone → pooling → attention → head, each part chosen by name.

A part is a name (`pooling: avg`) or a name with options (`pooling: {name: cbp, dim: 8192}`). Attention applies
`apply_to: pooled` (the paper: to the pooled descriptor, folded into maps of `map_size`) or `apply_to: features` (to the
backbone's spatial map, before pooling). A new row of the results table is a params entry; a new kind of part
is a module here plus one line below.
"""

import torch
from torch import nn

from landmark.errors import UserError
from landmark.models.attention import NoAttention, SelfAttention, SpatialAttention
from landmark.models.backbones import create_backbone, freeze_first_tensors
from landmark.models.heads import LinearHead
from landmark.models.pooling import CompactBilinearPooling, CompactBilinearVectorPooling, GlobalAveragePooling
from landmark.settings import Variant

POOLINGS = {"avg": GlobalAveragePooling, "cbp_vector": CompactBilinearVectorPooling, "cbp": CompactBilinearPooling}
ATTENTIONS = {"none": NoAttention, "spatial": SpatialAttention, "self_attention": SelfAttention}
HEADS = {"linear": LinearHead}


class LandmarkModel(nn.Module):
    def __init__(self, backbone, pooling, attention, head, attention_on: str, data_config):
        super().__init__()
        self.backbone, self.pooling, self.attention, self.head = backbone, pooling, attention, head
        self.attention_on = attention_on
        self.data_config = data_config

    def forward(self, images):
        features = self.backbone.forward_features(images)
        if self.attention_on == "features":
            features = self.attention(features)
        descriptor = self.pooling(features)
        if self.attention_on == "pooled":
            descriptor = self.attention(descriptor)
        return self.head(descriptor)


def _part(registry, variant, key, where):
    """(class, options) for one part of a variant."""
    spec = getattr(variant, key)
    options = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = options.pop("name", None)
    if name not in registry:
        raise UserError(f"{where}.{key}: unknown {key} {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name], options


def _build(part_class, options, where, *args):
    try:
        return part_class(*args, **options)
    except TypeError as error:
        raise UserError(f"{where}: {error}; check the part's options")
    except UserError as error:
        raise UserError(f"{where}.{error}")


def create_model(variant: Variant, num_classes: int, where: str = "variant", pretrained: str | None = None):
    """A LandmarkModel for one variant (landmark.settings.Variant). `where` names the params key in errors;
    `pretrained` overrides the variant's (a saved model is rebuilt with `none`, then loaded)."""
    pooling_class, pooling_options = _part(POOLINGS, variant, "pooling", where)
    attention_class, attention_options = _part(ATTENTIONS, variant, "attention", where)
    head_class, head_options = _part(HEADS, variant, "head", where)
    attention_on = attention_options.pop("apply_to", "pooled")
    if attention_on not in ("pooled", "features"):
        raise UserError(f"{where}.attention.apply_to: {attention_on!r} must be pooled or features")
    backbone, data_config = create_backbone(
        variant.backbone, variant.pretrained if pretrained is None else pretrained, where
    )
    freeze_first_tensors(backbone, variant.frozen_tensors)
    pooling = _build(pooling_class, pooling_options, f"{where}.pooling", backbone.num_features)
    attention_width = pooling.out_features if attention_on == "pooled" else backbone.num_features
    attention = _build(attention_class, attention_options, f"{where}.attention", attention_width)
    head = _build(head_class, head_options, f"{where}.head", pooling.out_features, num_classes)
    return LandmarkModel(backbone, pooling, attention, head, attention_on, data_config)


def check_builds(variant: Variant, where: str) -> None:
    """Build the variant's model and run it once at its image size, before any work starts: an unknown part or
    option, or an image size the backbone cannot take, is one line naming the params key."""
    model = create_model(variant, num_classes=2, where=where, pretrained="none").eval()
    size = variant.image_size
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as error:
        raise UserError(
            f"{where}.image_size: {variant.backbone} cannot take {size} px images ({str(error).splitlines()[0]})"
        )
