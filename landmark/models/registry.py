"""Build a model from a variant's params: backbone → attention → pooling → neck → head, and the loss beside it,
each part chosen by name.

A part is a name (`pooling: avg`) or a name with options (`pooling: {name: cbp, dim: 8192}`). Attention applies
`apply_to: pooled` (the paper: to the pooled descriptor, folded into maps of `map_size`) or `apply_to: features` (to the
backbone's spatial map, before pooling). A new row of the results table is a params entry; a new kind of part
is a module in landmark/models/ plus one line in PARTS below.

The constructor rule, for every part: the first argument is the width of what it takes (the channels of a
feature map, the features of a vector) — for a head, followed by the number of classes; a loss takes the number of
images of each class instead (its length is the number of classes); the part's options in params.yaml are
keyword-only arguments with no default, so params.yaml gives every value that shapes a model; and the part
exposes `out_features`, the width of what it gives. A head also gives `confidence(logits)`, how an inference
confidence is read from its logits.
"""

import inspect

import torch
from torch import nn

from landmark.errors import UserError
from landmark.models.attention import NoAttention, SelfAttention, SpatialAttention
from landmark.models.backbones import create_backbone, freeze_first_tensors
from landmark.models.heads import CosineHead, EmbeddingNeck, LinearHead, NoNeck
from landmark.models.losses import ArcFace, CosFace, CrossEntropy
from landmark.models.pooling import (
    CompactBilinearPooling,
    CompactBilinearVectorPooling,
    GeneralizedMeanPooling,
    GlobalAveragePooling,
)
from landmark.settings import Variant

PARTS = {
    "pooling": {
        "avg": GlobalAveragePooling,
        "cbp_vector": CompactBilinearVectorPooling,
        "cbp": CompactBilinearPooling,
        "gem": GeneralizedMeanPooling,
    },
    "attention": {"none": NoAttention, "spatial": SpatialAttention, "self_attention": SelfAttention},
    "neck": {"none": NoNeck, "embedding": EmbeddingNeck},
    "head": {"linear": LinearHead, "cosine": CosineHead},
    "loss": {"cross_entropy": CrossEntropy, "arcface": ArcFace, "cosface": CosFace},
}


class LandmarkModel(nn.Module):
    """timm's contract: `forward_features` gives the spatial feature map, `forward_head(features, pre_logits=True)`
    the embedding and `forward_head(features)` the logits, so embeddings and head swaps come free."""

    def __init__(self, backbone, attention, pooling, neck, head, attention_on: str, data_config):
        super().__init__()
        self.backbone, self.attention, self.pooling, self.neck, self.head = backbone, attention, pooling, neck, head
        self.attention_on = attention_on
        self.data_config = data_config

    def forward_features(self, images):
        """(B, C, H, W): the backbone's map, with attention on it when the variant applies it to features."""
        features = self.backbone.forward_features(images)
        return self.attention(features) if self.attention_on == "features" else features

    def forward_descriptor(self, features):
        """(B, D): the pooled descriptor, with attention on it when the variant applies it to the pooled vector."""
        descriptor = self.pooling(features)
        return self.attention(descriptor) if self.attention_on == "pooled" else descriptor

    def forward_head(self, features, pre_logits: bool = False):
        """The embedding (pre_logits) or the class logits of a feature map."""
        embedding = self.neck(self.forward_descriptor(features))
        return embedding if pre_logits else self.head(embedding)

    def forward(self, images):
        return self.forward_head(self.forward_features(images))


def _part(variant, key, where):
    """(class, options) for one part of a variant."""
    registry, spec = PARTS[key], getattr(variant, key)
    options = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = options.pop("name", None)
    if name not in registry:
        raise UserError(f"{where}.{key}: unknown {key} {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name], options


def _build(part_class, options, where, *args):
    """The part built with its options, each one named, none missing: a wrong one is one line naming it."""
    accepted = [option for option in inspect.signature(part_class).parameters.values()
                if option.kind is option.KEYWORD_ONLY]  # fmt: skip
    unknown = [name for name in options if name not in {option.name for option in accepted}]
    if unknown:
        takes = ", ".join(option.name for option in accepted) or "no option"
        raise UserError(f"{where}: no option {unknown[0]!r}; it takes {takes}")
    missing = [option.name for option in accepted if option.default is option.empty and option.name not in options]
    if missing:  # no option has a default: params.yaml holds every value that shapes the model
        given = f"{{name: …, {', '.join(f'{option.name}: …' for option in accepted)}}}"
        raise UserError(f"{where}: {', '.join(missing)} not given; write every option of the part, {given}")
    try:
        return part_class(*args, **options)
    except TypeError as error:  # an option of the wrong kind, where torch takes it
        raise UserError(f"{where}: {error}; check the part's options") from None
    except UserError as error:
        raise UserError(f"{where}.{error}") from None


def create_model(variant: Variant, num_classes: int, where: str = "variant", pretrained: str | None = None):
    """A LandmarkModel for one variant (landmark.settings.Variant). `where` names the params key in errors;
    `pretrained` overrides the variant's (a saved model is rebuilt with `none`, then loaded)."""
    attention_class, attention_options = _part(variant, "attention", where)
    attention_on = attention_options.pop("apply_to", "pooled")
    if attention_on not in ("pooled", "features"):
        raise UserError(f"{where}.attention.apply_to: {attention_on!r} must be pooled or features")
    backbone, data_config = create_backbone(
        variant.backbone, variant.pretrained if pretrained is None else pretrained, where
    )
    freeze_first_tensors(backbone, variant.frozen_tensors)
    parts = {}
    parts["pooling"] = _build(*_part(variant, "pooling", where), f"{where}.pooling", backbone.num_features)
    attention_width = parts["pooling"].out_features if attention_on == "pooled" else backbone.num_features
    parts["attention"] = _build(attention_class, attention_options, f"{where}.attention", attention_width)
    parts["neck"] = _build(*_part(variant, "neck", where), f"{where}.neck", parts["pooling"].out_features)
    parts["head"] = _build(*_part(variant, "head", where), f"{where}.head", parts["neck"].out_features, num_classes)
    return LandmarkModel(backbone, **parts, attention_on=attention_on, data_config=data_config)


def create_loss(variant: Variant, class_images, where: str = "variant"):
    """The variant's loss: (logits, targets) → one loss per image; class_images: the images of each class."""
    return _build(*_part(variant, "loss", where), f"{where}.loss", class_images)


def check_builds(variant: Variant, where: str) -> None:
    """Build the variant's model and run it once at its image size, before any work starts: an unknown part or
    option, or an image size the backbone cannot take, is one line naming the params key."""
    model = create_model(variant, num_classes=2, where=where, pretrained="none").eval()
    create_loss(variant, class_images=[1, 2], where=where)
    size = variant.image_size
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as error:
        raise UserError(
            f"{where}.image_size: {variant.backbone} cannot take {size} px images ({str(error).splitlines()[0]})"
        ) from None
