"""Classifier heads: a descriptor in, one logit per class out."""

from torch import nn


class LinearHead(nn.Linear):
    """One fully connected layer to the class logits, trained with softmax cross-entropy as in the paper."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
