"""Attention parts, applied to what the pooling part gives."""
from torch import nn


class NoAttention(nn.Identity):
    """The plain model: the descriptor passes through unchanged."""

    def __init__(self, in_features: int):
        super().__init__()
        self.out_features = in_features
