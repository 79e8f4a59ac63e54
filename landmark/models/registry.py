"""Build a model from a variant's params: backbone → pooling → attention → head, each part chosen by name.

A new row of the results table is a params entry; a new kind of part is a module here plus one line below.
"""
from torch import nn

from landmark.errors import UserError
from landmark.models.attention import NoAttention
from landmark.models.backbones import create_backbone, freeze_first_tensors
from landmark.models.heads import LinearHead
from landmark.models.pooling import GlobalAveragePooling

POOLINGS = {"avg": GlobalAveragePooling}
ATTENTIONS = {"none": NoAttention}
HEADS = {"linear": LinearHead}


class LandmarkModel(nn.Module):
    def __init__(self, backbone, pooling, attention, head, data_config):
        super().__init__()
        self.backbone, self.pooling, self.attention, self.head = backbone, pooling, attention, head
        self.data_config = data_config

    def forward(self, images):
        return self.head(self.attention(self.pooling(self.backbone.forward_features(images))))


def _part(registry, variant, key, where):
    name = variant.get(key)
    if name not in registry:
        raise UserError(f"{where}.{key}: unknown {key} {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name]


def create_model(variant: dict, num_classes: int, where: str = "variant", pretrained: str | None = None):
    """A LandmarkModel for one variant of params.yaml. `where` names the params key in errors; `pretrained`
    overrides the variant's (a saved model is rebuilt with `none`, then loaded)."""
    pooling_class = _part(POOLINGS, variant, "pooling", where)
    attention_class = _part(ATTENTIONS, variant, "attention", where)
    head_class = _part(HEADS, variant, "head", where)
    backbone, data_config = create_backbone(
        variant["backbone"], variant["pretrained"] if pretrained is None else pretrained, where
    )
    freeze_first_tensors(backbone, int(variant.get("frozen_tensors", 0)))
    pooling = pooling_class(backbone.num_features)
    attention = attention_class(pooling.out_features)
    head = head_class(attention.out_features, num_classes)
    return LandmarkModel(backbone, pooling, attention, head, data_config)
