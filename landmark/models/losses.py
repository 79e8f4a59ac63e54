"""Losses: the logits, the class indices and the class sizes known at construction; one loss per image out
(training takes the mean, evaluation reports it). A part of its own beside the head, as in the 2020 winners'
code: margin losses shape the target's logit, which the head at inference does not know.

Not pytorch-metric-learning's ArcFaceLoss / SubCenterArcFaceLoss: they own the class weights inside the loss
and take embeddings, which would put the classifier in the loss and leave the head nothing to read an inference
confidence from; here the head (CosineHead) owns the weights and gives cos θ, and the loss adds the margin."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """Softmax cross-entropy, the paper's loss, in float32 whatever the autocast dtype of the logits."""

    def __init__(self, class_images):
        super().__init__()
        self.out_features = len(class_images)

    def forward(self, logits, targets):
        return F.cross_entropy(logits.float(), targets, reduction="none")


def dynamic_margins(class_images, margin: float, smallest_margin: float, exponent: float) -> np.ndarray:
    """A margin per class from its number of images (Ha et al. 2020, 3rd place GLR 2020): n^-exponent, mapped
    linearly so the smallest class gets `margin` and the largest `smallest_margin`. Equal margins when those
    two are equal, or all classes are of one size."""
    decay = np.asarray(class_images, dtype=np.float64) ** -exponent
    spread = decay.max() - decay.min()
    share = (decay - decay.min()) / spread if spread > 0 else np.ones_like(decay)
    return smallest_margin + (margin - smallest_margin) * share


class ArcFace(nn.Module):
    """ArcFace (Deng et al. 2019): cross-entropy over s · cos θ_j for the other classes and s · cos(θ_t + m_t)
    for the target, on a CosineHead's logits. With `smallest_margin` below `margin`, the margins are dynamic:
    larger for small classes (dynamic_margins, by class size to the power -exponent: 0.25 in Ha et al.)."""

    def __init__(self, class_images, *, scale: float, margin: float, smallest_margin: float, exponent: float):
        super().__init__()
        margins = dynamic_margins(class_images, margin, smallest_margin, exponent)
        self.register_buffer("margins", torch.tensor(margins, dtype=torch.float32))
        self.scale, self.out_features = scale, len(class_images)

    def target_logit(self, cosine, margin):
        angle = torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
        return torch.cos((angle + margin).clamp(max=math.pi))  # past π, cos would rise again

    def forward(self, logits, targets):
        cosines = logits.float()
        target = cosines.gather(1, targets[:, None])
        shaped = cosines.scatter(1, targets[:, None], self.target_logit(target, self.margins[targets][:, None]))
        return F.cross_entropy(self.scale * shaped, targets, reduction="none")


class CosFace(ArcFace):
    """CosFace (Wang et al. 2018): the target's logit is s · (cos θ_t − m_t)."""

    def target_logit(self, cosine, margin):
        return cosine - margin
