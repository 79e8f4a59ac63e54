"""Losses: the logits and the class indices in, one loss per image out (training takes the mean, evaluation
reports it). A part of its own beside the head, as in the 2020 winners' code: margin losses (ArcFace and kin)
need the targets to shape the logits, which the head at inference does not have."""

import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """Softmax cross-entropy, the paper's loss, in float32 whatever the autocast dtype of the logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.out_features = num_classes

    def forward(self, logits, targets):
        return F.cross_entropy(logits.float(), targets, reduction="none")
