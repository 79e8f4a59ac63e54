"""A ballot (each query's votes) and its count into a ranking (each query's landmarks, best first).

The count: a query's landmarks ranked by the sum of their votes' weights (among equal sums, the landmark of the
nearer voter first), each with the sum of its votes' credits as its confidence. Credits are the weights until a
step lowers them, so a penalty lowers a confidence without changing the answer: voting on lowered weights would let
a landmark of one vote beat one of three once they turn negative.
"""

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Ballot:
    """Queries × voters: each vote's landmark (-1: no vote), its weight in choosing the landmark, its credit towards
    the chosen landmark's confidence, and the gallery image behind it (-1: the classifier)."""

    labels: np.ndarray
    weights: np.ndarray
    credits: np.ndarray
    positions: np.ndarray

    def lowered(self, amount) -> "Ballot":
        """The gallery votes' credits less amount (broadcast over queries × voters); the classifier's stay."""
        return replace(self, credits=np.where(self.positions >= 0, self.credits - amount, self.credits))


@dataclass(frozen=True)
class Ranking:
    """Queries × answers, best first: each answer's landmark (-1: none) and confidence (-inf: none)."""

    labels: np.ndarray
    confidences: np.ndarray

    def with_confidences(self, confidences) -> "Ranking":
        return replace(self, confidences=confidences)


def count(ballot: Ballot, top_k: int = 1) -> Ranking:
    """Each query's top_k landmarks by the summed weights of their votes, each with its summed credits."""
    queries, voters = ballot.labels.shape
    labels = np.full((queries, top_k), -1, dtype=np.int64)
    confidences = np.full((queries, top_k), -np.inf)
    earlier = np.tri(voters, voters, -1, dtype=bool)  # [j, i]: voter i comes before voter j
    chunk = max(1, (1 << 24) // max(1, voters**2))  # bounds the queries × voters × voters masks
    for start in range(0, queries, chunk):
        part = slice(start, start + chunk)
        voting = ballot.labels[part] >= 0
        same = (ballot.labels[part][:, :, None] == ballot.labels[part][:, None, :]) & voting[:, None, :]
        weight = (same * np.where(voting, ballot.weights[part], 0)[:, None, :]).sum(axis=2)
        credit = (same * np.where(voting, ballot.credits[part], 0)[:, None, :]).sum(axis=2)
        first = voting & ~(same & earlier).any(axis=2)  # a landmark is ranked once, at its nearest voter
        weight = np.where(first, weight, -np.inf)
        best = np.argsort(-weight, axis=1, kind="stable")[:, :top_k]
        found = np.isfinite(np.take_along_axis(weight, best, axis=1))
        shown = slice(0, best.shape[1])
        labels[part, shown] = np.where(found, np.take_along_axis(ballot.labels[part], best, axis=1), -1)
        confidences[part, shown] = np.where(found, np.take_along_axis(credit, best, axis=1), -np.inf)
    return Ranking(labels, confidences)
