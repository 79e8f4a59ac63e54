"""The paper's parts checked by their mathematics, not only their shapes."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from landmark.errors import UserError
from landmark.models import check_builds, create_loss, create_model
from landmark.models.attention import SelfAttention, SpatialAttention
from landmark.models.heads import CosineHead
from landmark.models.losses import ArcFace, CosFace, dynamic_margins
from landmark.models.pooling import (
    CompactBilinearPooling,
    CompactBilinearVectorPooling,
    CountSketch,
    GeneralizedMeanPooling,
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


@pytest.mark.parametrize(
    "pooling", [CompactBilinearVectorPooling(32, dim=64, seed=0), CompactBilinearPooling(32, dim=64, seed=0)]
)
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
        (SelfAttention(16, map_size=2, spectral_normalisation=True), (2, 16)),
        (SelfAttention(16, spectral_normalisation=True), (2, 16, 3, 2)),
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
    attention = SelfAttention(8 * 4 * 4, map_size=4, spectral_normalisation=True)
    assert attention.gamma.item() == 0
    descriptor = torch.randn(3, 8 * 4 * 4)
    assert torch.equal(attention(descriptor), descriptor)
    assert hasattr(attention.query, "parametrizations")  # spectral normalisation


def test_map_size_must_fold_the_descriptor():
    variant = VARIANT | {"backbone": "resnet18", "attention": {"name": "spatial", "map_size": 7}}
    with pytest.raises(UserError, match=r"variants.v.attention.map_size: 512 features do not fold into maps of 7 x 7"):
        create_model(typed(variant)[0], 3, where="variants.v")
    variant["attention"] = {"name": "spatial", "size": 4}
    with pytest.raises(UserError, match=r"^variants.v.attention: no option 'size'; it takes map_size$"):
        create_model(typed(variant)[0], 3, where="variants.v")


def test_gem_with_p_one_is_average_pooling_and_tends_to_max_pooling_as_p_rises():
    torch.manual_seed(0)
    features = torch.rand(2, 5, 4, 4) + 0.01
    assert torch.allclose(GeneralizedMeanPooling(5, p=1.0)(features), features.mean(dim=(2, 3)), atol=1e-6)
    maximum = features.amax(dim=(2, 3))
    gaps = [(maximum - GeneralizedMeanPooling(5, p=p)(features)).abs().max().item() for p in (1.0, 3.0, 10.0, 80.0)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.05
    gem = GeneralizedMeanPooling(5, p=3.0)
    gem(features).sum().backward()
    assert gem.p.grad is not None  # p is trained


def test_arcface_shapes_only_the_target_logit_as_s_cos_theta_plus_m():
    cosines = torch.tensor([[0.5, 0.2, -0.1], [0.0, 0.8, 0.3]])
    targets = torch.tensor([0, 1])
    arcface = ArcFace([10, 10, 10], scale=10.0, margin=0.3, smallest_margin=0.3, exponent=0.25)
    expected = cosines.clone() * 10.0
    expected[0, 0] = 10.0 * math.cos(math.acos(0.5) + 0.3)
    expected[1, 1] = 10.0 * math.cos(math.acos(0.8) + 0.3)
    assert torch.allclose(arcface(cosines, targets), F.cross_entropy(expected, targets, reduction="none"), atol=1e-5)
    cosface = CosFace([10, 10, 10], scale=10.0, margin=0.3, smallest_margin=0.3, exponent=0.25)
    expected = cosines.clone() * 10.0
    expected[0, 0], expected[1, 1] = 10.0 * (0.5 - 0.3), 10.0 * (0.8 - 0.3)
    assert torch.allclose(cosface(cosines, targets), F.cross_entropy(expected, targets, reduction="none"), atol=1e-5)


def test_dynamic_margins_follow_the_class_counts():
    margins = dynamic_margins([1000, 10, 100, 10], margin=0.5, smallest_margin=0.2, exponent=0.25)
    assert margins[1] == margins[3] == pytest.approx(0.5) and margins[0] == pytest.approx(0.2)
    assert 0.2 < margins[2] < 0.5  # between, by n^-1/4
    arcface = ArcFace([1000, 10], scale=30.0, margin=0.5, smallest_margin=0.2, exponent=0.25)
    assert arcface.margins.tolist() == pytest.approx([0.2, 0.5])
    assert dynamic_margins([5, 50], 0.4, 0.4, 0.25).tolist() == [0.4, 0.4]  # smallest = margin: fixed


def test_subcenter_cosine_head_takes_the_largest_cosine_over_each_class_subcentres():
    head = CosineHead(2, num_classes=2, subcenters=2, scale=30.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))  # class 0: +x, +y
    cosines = head(torch.tensor([[0.0, 3.0], [-2.0, 0.0]]))
    assert torch.allclose(cosines, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    confidence, predicted = head.confidence(cosines)
    assert predicted.tolist() == [0, 1] and torch.allclose(confidence, torch.sigmoid(torch.tensor(30.0)).expand(2))


def test_the_winners_recipe_builds_and_learns():
    torch.manual_seed(0)
    recipe = VARIANT | {
        "backbone": "resnet18", "pooling": {"name": "gem", "p": 3.0}, "neck": {"name": "embedding", "dim": 16},
        "head": {"name": "cosine", "subcenters": 2, "scale": 30.0},
        "loss": {"name": "arcface", "scale": 16.0, "margin": 0.3, "smallest_margin": 0.1, "exponent": 0.25},
    }  # fmt: skip
    variant = typed(recipe)[0]
    model, loss_of = create_model(variant, 3), create_loss(variant, [6, 3, 1])
    embedding = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert embedding.shape == (2, 16)
    images, targets = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = loss_of(model(images), targets).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize(
    "key,part,message",
    [
        ("head", {"name": "cosine", "subcenters": 2}, "scale not given; write every option of the part, "
         "{name: …, subcenters: …, scale: …}"),
        ("pooling", "gem", "p not given; write every option of the part, {name: …, p: …}"),
        ("loss", {"name": "arcface", "scale": 16.0, "margin": 0.3}, "smallest_margin, exponent not given"),
    ],
    ids=["cosine-scale", "gem-p", "arcface-margins"],
)  # fmt: skip
def test_a_part_without_every_option_is_one_line_naming_the_missing_ones(key, part, message):
    """No option has a default in code: what shapes a model is written in params.yaml."""
    variant = typed(VARIANT | {"backbone": "resnet18", key: part})[0]
    with pytest.raises(UserError, match=rf"^variants.v.{key}: {re.escape(message)}"):
        check_builds(variant, "variants.v")
