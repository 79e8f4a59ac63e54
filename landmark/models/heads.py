"""Heads and necks. A neck maps the pooled descriptor to the embedding (pre-logits: what retrieval would index);
a head maps the embedding to one logit per class and says how an inference confidence is read from them."""

import torch
from torch import nn


class NoNeck(nn.Identity):
    """The paper's model: the pooled descriptor is the embedding."""

    def __init__(self, in_features: int):
        super().__init__()
        self.out_features = in_features


class LinearHead(nn.Linear):
    """One fully connected layer to the class logits, trained with softmax cross-entropy as in the paper."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)

    @staticmethod
    def confidence(logits: torch.Tensor):
        """(confidence, class index) of each row: the top class and its softmax probability."""
        return logits.float().softmax(dim=1).max(dim=1)
