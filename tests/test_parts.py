"""The paper's parts checked by their mathematics, not only their shapes."""

import pytest
import torch

from landmark.errors import UserError
from landmark.models import create_model
from landmark.models.attention import SelfAttention, SpatialAttention
from landmark.models.pooling import (
    CompactBilinearPooling,
    CompactBilinearVectorPooling,
    CountSketch,
    compact_bilinear,
)
from tests.test_resume import VARIANT, typed


def test_compact_bilinear_is_the_count_sketch_of_the_outer_product():
    torch.manual_seed(0)
    x, y = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    sketch_x, sketch_y = CountSketch(10, 32, seed=1), CountSketch(7, 32, seed=2)
    combined_hash = (sketch_x.hash[:, None] + sketch_y.hash[None, :]) % 32
    combined_sign = sketch_x.sign[:, None] * sketch_y.sign[None, :]
    for row in range(3):
        outer = x[row][:, None] * y[row][None, :]
        expected = torch.zeros(32, dtype=torch.float64).index_add(
            0, combined_hash.flatten(), (combined_sign.double() * outer).flatten()
        )
        assert torch.allclose(compact_bilinear(x, y, sketch_x, sketch_y)[row], expected, atol=1e-12)


@pytest.mark.parametrize("pooling", [CompactBilinearVectorPooling(32, dim=64), CompactBilinearPooling(32, dim=64)])
def test_bilinear_pooling_of_bf16_features_runs_in_float32(pooling):
    # GPU training runs under bf16 autocast, and cuFFT has no bf16 transform
    features = torch.randn(2, 32, 3, 3).bfloat16()
    pooled = pooling(features)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, pooling(features.float()), rtol=0.02, atol=0.02)  # bf16 rounding of the mean


def test_sketched_inner_products_estimate_the_bilinear_kernel():
    generator = torch.Generator().manual_seed(0)
    x, y = (
        torch.rand(64, generator=generator, dtype=torch.float64),
        torch.rand(64, generator=generator, dtype=torch.float64),
    )
    estimates = []
    for draw in range(200):
        first, second = CountSketch(64, 512, seed=2 * draw), CountSketch(64, 512, seed=2 * draw + 1)
        estimates.append(torch.dot(compact_bilinear(x, x, first, second), compact_bilinear(y, y, first, second)))
    assert torch.stack(estimates).mean().item() == pytest.approx(torch.dot(x, y).item() ** 2, rel=0.03)


@pytest.mark.parametrize(
    "part, shape",
    [
        (CompactBilinearVectorPooling(6, dim=16, seed=0), (2, 6, 2, 2)),
        (CompactBilinearPooling(6, dim=16, seed=0), (2, 6, 2, 2)),
        (SpatialAttention(32, map_size=2), (2, 32)),
        (SpatialAttention(5), (2, 5, 3, 3)),
        (SelfAttention(16, map_size=2), (2, 16)),
        (SelfAttention(16), (2, 16, 3, 2)),
    ],
)
def test_gradients_match_finite_differences(part, shape):
    part = part.double().eval()
    if isinstance(part, SelfAttention):
        part.gamma.data.fill_(0.7)  # at 0 the attention branch would be cut off from the gradient
    torch.manual_seed(0)
    inputs = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(part, (inputs,), eps=1e-6, atol=1e-5)


def test_spatial_attention_has_no_parameters_and_weights_summing_to_one():
    attention = SpatialAttention(3 * 16, map_size=4)
    assert list(attention.parameters()) == []
    maps = torch.rand(2, 3, 4, 4) + 0.1
    weights = attention.attend(maps) / maps
    assert torch.allclose(weights, weights[:, :1].expand_as(weights))  # one weight per position, every channel
    assert torch.allclose(weights[:, 0].sum(dim=(1, 2)), torch.ones(2))


def test_self_attention_starts_as_the_identity():
    attention = SelfAttention(8 * 4 * 4, map_size=4)
    assert attention.gamma.item() == 0
    descriptor = torch.randn(3, 8 * 4 * 4)
    assert torch.equal(attention(descriptor), descriptor)
    assert hasattr(attention.query, "parametrizations")  # spectral normalisation


def test_map_size_must_fold_the_descriptor():
    variant = VARIANT | {"backbone": "resnet18", "attention": {"name": "spatial", "map_size": 7}}
    with pytest.raises(UserError, match=r"variants.v.attention.map_size: 512 features do not fold into maps of 7 x 7"):
        create_model(typed(variant)[0], 3, where="variants.v")
    variant["attention"] = {"name": "spatial", "size": 4}
    with pytest.raises(UserError, match=r"variants.v.attention: .*unexpected keyword argument 'size'"):
        create_model(typed(variant)[0], 3, where="variants.v")
