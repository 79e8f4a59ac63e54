"""Pooling parts: a spatial feature map (B, C, H, W) in, a descriptor out."""
from torch import nn


class GlobalAveragePooling(nn.Module):
    """Mean over positions, the standard ImageNet head (He et al. 2016; Chollet 2017)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.out_features = in_channels

    def forward(self, features):
        return features.mean(dim=(2, 3))
