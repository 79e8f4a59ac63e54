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
    spec = variant.get(key)
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


def create_model(variant: dict, num_classes: int, where: str = "variant", pretrained: str | None = None):
    """A LandmarkModel for one variant of params.yaml. `where` names the params key in errors; `pretrained`
    overrides the variant's (a saved model is rebuilt with `none`, then loaded)."""
    pooling_class, pooling_options = _part(POOLINGS, variant, "pooling", where)
    attention_class, attention_options = _part(ATTENTIONS, variant, "attention", where)
    head_class, head_options = _part(HEADS, variant, "head", where)
    attention_on = attention_options.pop("apply_to", "pooled")
    if attention_on not in ("pooled", "features"):
        raise UserError(f"{where}.attention.apply_to: {attention_on!r} must be pooled or features")
    backbone, data_config = create_backbone(
        variant["backbone"], variant["pretrained"] if pretrained is None else pretrained, where
    )
    freeze_first_tensors(backbone, int(variant.get("frozen_tensors", 0)))
    pooling = _build(pooling_class, pooling_options, f"{where}.pooling", backbone.num_features)
    attention_width = pooling.out_features if attention_on == "pooled" else backbone.num_features
    attention = _build(attention_class, attention_options, f"{where}.attention", attention_width)
    head = _build(head_class, head_options, f"{where}.head", pooling.out_features, num_classes)
    return LandmarkModel(backbone, pooling, attention, head, attention_on, data_config)


def check_variant(variant: dict, num_classes: int, where: str) -> None:
    """Reject a variant's params before any work starts: missing keys, non-positive numbers, unknown parts, and
    an image size the model cannot take. Errors name the params key."""
    for key in ("backbone", "pooling", "attention", "head", "pretrained", "image_size", "batch_size", "lr", "steps"):
        if key not in variant:
            raise UserError(f"{where}.{key}: missing; every variant needs it")
    for key, kind in (("image_size", int), ("batch_size", int), ("steps", int), ("lr", float)):
        value = variant[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or kind(value) != value:
            raise UserError(f"{where}.{key}: {value!r} must be a positive {kind.__name__}")
    frozen = variant.get("frozen_tensors", 0)
    if isinstance(frozen, bool) or not isinstance(frozen, int) or frozen < 0:
        raise UserError(f"{where}.frozen_tensors: {frozen!r} must be a whole number >= 0")
    model = create_model(variant, num_classes, where, pretrained="none").eval()
    size = int(variant["image_size"])
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as error:
        raise UserError(
            f"{where}.image_size: {variant['backbone']} cannot take {size} px images ({str(error).splitlines()[0]})"
        )
