"""Heads and necks. A neck maps the pooled descriptor to the embedding (pre-logits: what retrieval indexes); a
head maps the embedding to one logit per class and says how an inference confidence is read from them."""

import torch
import torch.nn.functional as F
from torch import nn


class NoNeck(nn.Identity):
    """The paper's model: the pooled descriptor is the embedding."""

    def __init__(self, in_features: int):
        super().__init__()
        self.out_features = in_features


class EmbeddingNeck(nn.Sequential):
    """Linear → BatchNorm → PReLU to `dim` (512 in their code): the neck of the 2020 GLR winners (Henkel &
    Singer)."""

    def __init__(self, in_features: int, *, dim: int):
        super().__init__(nn.Linear(in_features, dim), nn.BatchNorm1d(dim), nn.PReLU())
        self.out_features = dim


class LinearHead(nn.Linear):
    """One fully connected layer to the class logits, trained with softmax cross-entropy as in the paper."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)

    @staticmethod
    def confidence(logits: torch.Tensor):
        """(confidence, class index) of each row: the top class and its softmax probability."""
        return logits.float().softmax(dim=1).max(dim=1)


class CosineHead(nn.Module):
    """Cosine logits for margin losses: cos θ between the L2-normalised embedding and each class's normalised
    weight. With `subcenters` k > 1, each class has k weights and its logit is the largest cosine (sub-center
    ArcFace, Deng et al. 2020), so a class's noisy or many-sided images need not crowd one centre. `scale` is the
    softmax temperature of the inference confidence only (the loss has its own)."""

    def __init__(self, in_features: int, num_classes: int, *, subcenters: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.num_classes, self.subcenters, self.scale = num_classes, subcenters, scale
        self.out_features = num_classes

    def forward(self, embedding):
        cosines = F.linear(F.normalize(embedding.float()), F.normalize(self.weight.float()))
        return cosines.view(len(embedding), self.num_classes, self.subcenters).amax(dim=2)

    def confidence(self, logits: torch.Tensor):
        """(confidence, class index): the top class's softmax probability of scale · cos θ."""
        return (logits.float() * self.scale).softmax(dim=1).max(dim=1)
