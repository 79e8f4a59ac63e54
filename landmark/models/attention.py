"""Attention parts. Each takes spatial maps (B, C, H, W); given a descriptor vector (B, D) and a map_size S, it
reshapes the vector into D / S² maps of S × S first and flattens the result back, as the paper did with its
8192-d bilinear descriptor (32 maps of 16 × 16 for spatial attention, 8 maps of 32 × 32 for self-attention)."""

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from landmark.errors import UserError


class NoAttention(nn.Identity):
    """The plain model: the input passes through unchanged."""

    def __init__(self, in_features: int, *, map_size: int | None = None):
        super().__init__()


def _map_channels(in_features: int, map_size: int | None) -> int:
    if map_size is None:
        return in_features
    if map_size < 1 or in_features % (map_size * map_size):
        raise UserError(f"map_size: {in_features} features do not fold into maps of {map_size} x {map_size}")
    return in_features // (map_size * map_size)


class _OnMaps(nn.Module):
    """Folds a descriptor vector into maps around `attend`, when built with a map_size."""

    def __init__(self, in_features: int, *, map_size: int | None = None):
        super().__init__()
        self.map_size = map_size
        self.channels = _map_channels(in_features, map_size)

    def forward(self, x):
        if self.map_size is None:
            return self.attend(x)
        maps = x.view(x.shape[0], self.channels, self.map_size, self.map_size)
        return self.attend(maps).flatten(1)


class SpatialAttention(_OnMaps):
    """Parameter-free spatial attention (Wang et al. 2018, "Parameter-Free Spatial Attention Network for Person
    Re-Identification"): sum the maps over channels, softmax over positions, and weight every map by it."""

    def attend(self, maps):
        batch, _, height, width = maps.shape
        weights = torch.softmax(maps.sum(dim=1).flatten(1), dim=1).view(batch, 1, height, width)
        return maps * weights


class SelfAttention(_OnMaps):
    """SAGAN self-attention (Zhang et al. 2019, "Self-Attention Generative Adversarial Networks"): 1×1 query and
    key convolutions C → C/8 and value C → C, a softmax over positions, and γ·out + x with γ starting at 0.
    Spectral normalisation on the convolutions, as the paper says (its code never applied it)."""

    def __init__(self, in_features: int, *, spectral_normalisation: bool, map_size: int | None = None):
        super().__init__(in_features, map_size=map_size)
        channels = self.channels
        wrap = spectral_norm if spectral_normalisation else (lambda module: module)
        self.query = wrap(nn.Conv2d(channels, max(1, channels // 8), 1))
        self.key = wrap(nn.Conv2d(channels, max(1, channels // 8), 1))
        self.value = wrap(nn.Conv2d(channels, channels, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, maps):
        batch, channels, height, width = maps.shape
        query = self.query(maps).flatten(2).transpose(1, 2)  # (B, N, C/8)
        key = self.key(maps).flatten(2)  # (B, C/8, N)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)  # (B, N, N): row i attends over positions j
        value = self.value(maps).flatten(2)  # (B, C, N)
        out = torch.bmm(value, attention.transpose(1, 2)).view(batch, channels, height, width)
        return self.gamma * out + maps
