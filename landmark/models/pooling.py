"""Pooling parts: a spatial feature map (B, C, H, W) in, a descriptor out."""

import torch
from torch import nn


class GlobalAveragePooling(nn.Module):
    """Mean over positions, the standard ImageNet head (He et al. 2016; Chollet 2017)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.out_features = in_channels

    def forward(self, features):
        return features.mean(dim=(2, 3))


class CountSketch(nn.Module):
    """Ψ(x) = Σ_i s(i)·x_i·e_{h(i)}: a random projection from C to D dimensions (Charikar et al. 2002), with hash
    h: [C] → [D] and sign s: [C] → {±1} drawn once from `seed` and kept in the state dict."""

    def __init__(self, in_features: int, out_features: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.out_features = out_features
        self.register_buffer("hash", torch.randint(out_features, (in_features,), generator=generator))
        self.register_buffer("sign", torch.randint(2, (in_features,), generator=generator).float() * 2 - 1)

    def forward(self, x):
        sketch = x.new_zeros(*x.shape[:-1], self.out_features)
        return sketch.index_add(-1, self.hash, x * self.sign.to(x.dtype))


def compact_bilinear(x, y, sketch_x: CountSketch, sketch_y: CountSketch):
    """Ψ(x ⊗ y) without forming x ⊗ y: the circular convolution of two count sketches, computed as a product
    in the frequency domain (Pham & Pagh 2013; Gao et al. 2016, "Compact Bilinear Pooling"). In float32 at least:
    cuFFT has no bfloat16 transform, CUDA autocast does not upcast FFTs, and a bf16 sketch would sum 2048 terms
    with 8 bits of mantissa."""
    size = sketch_x.out_features
    x, y = (tensor.to(torch.promote_types(tensor.dtype, torch.float32)) for tensor in (x, y))
    spectrum = torch.fft.rfft(sketch_x(x), dim=-1) * torch.fft.rfft(sketch_y(y), dim=-1)
    return torch.fft.irfft(spectrum, n=size, dim=-1)


class CompactBilinearVectorPooling(nn.Module):
    """The paper's bilinear pooling (Yep & Chen 2019, after Hu's TensorFlow code): average-pool the map to one
    C-vector x, then the compact sketch of x ⊗ x, C → dim (2048 → 8192)."""

    def __init__(self, in_channels: int, *, dim: int, seed: int):
        super().__init__()
        self.sketch_x, self.sketch_y = CountSketch(in_channels, dim, seed), CountSketch(in_channels, dim, seed + 1)
        self.out_features = dim

    def forward(self, features):
        pooled = features.mean(dim=(2, 3))
        return compact_bilinear(pooled, pooled, self.sketch_x, self.sketch_y)


class CompactBilinearPooling(nn.Module):
    """Compact bilinear pooling as Gao et al. (2016) define it: the sketch of x_p ⊗ x_p at every position p,
    summed over positions, then signed square root and L2 normalisation."""

    def __init__(self, in_channels: int, *, dim: int, seed: int):
        super().__init__()
        self.sketch_x, self.sketch_y = CountSketch(in_channels, dim, seed), CountSketch(in_channels, dim, seed + 1)
        self.out_features = dim

    def forward(self, features):
        positions = features.flatten(2).transpose(1, 2)  # (B, HW, C)
        pooled = compact_bilinear(positions, positions, self.sketch_x, self.sketch_y).sum(dim=1)
        signed_root = torch.sign(pooled) * torch.sqrt(pooled.abs() + 1e-12)
        return nn.functional.normalize(signed_root, dim=-1)


class GeneralizedMeanPooling(nn.Module):
    """GeM (Radenović, Tolias & Chum 2018, "Fine-tuning CNN Image Retrieval with No Human Annotation"): the
    p-th root of the mean of x^p over positions, with p trained. p = 1 is average pooling; as p grows it tends
    to max pooling. The 2019–2021 GLR winners' pooling; `p` is where training starts it (3 in their code)."""

    def __init__(self, in_channels: int, *, p: float):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        # a floor under x before x^p (a zero would give p a gradient of log 0), not a setting: far below any
        # activation that moves the mean
        self.eps, self.out_features = 1e-6, in_channels

    def forward(self, features):
        # float32: a bf16 x^p over a 2048-channel map loses the small activations GeM is meant to weigh
        powered = features.float().clamp(min=self.eps).pow(self.p)
        return powered.mean(dim=(2, 3)).pow(1.0 / self.p)
