"""The steps of a recognition method (landmark.recognition.method), each a small class registered by name in STEPS.

A step changes the ballot before the count (`ballot`: each vote's label, its weight in choosing the label and its
credit towards the label's confidence) or the ranking after it (`ranking`), or both; what it does not define
it leaves as it is. A step's options are the fields of its dataclass, read from params.yaml's
`recognize.steps.<name>` and checked as every setting is (landmark.settings), so a wrong one is one line naming it.

`needs` names what a step works on beyond the query itself: `neighbours` (gallery votes: the knn and blend bases
have them, softmax has not) and `pool` (a non-landmark pool to compare with). A method whose step lacks what it
needs is refused before any work (method.check_methods): a step never runs as if it had worked. A step that sets
`refuses_non_landmarks` lowers confidences so that one at or below 0 means "no landmark" (landmark predict says so).

A new step: a class here and a line in STEPS; its options go in params.yaml under recognize.steps.
"""

from dataclasses import dataclass

import numpy as np

from landmark.settings import setting, whole


class Step:
    needs = frozenset()
    refuses_non_landmarks = False

    def ballot(self, ballot, queries):
        return ballot

    def ranking(self, ranking, queries):
        return ranking


@dataclass(frozen=True)
class QueryPenalty(Step):
    """Each gallery vote loses the query's mean similarity to its nearest pool photos (Henkel & Singer, GLR 2020,
    1st place): a query that looks like clutter is less sure of any landmark."""

    needs = frozenset({"neighbours", "pool"})
    refuses_non_landmarks = True
    pool_neighbours: int = setting(whole(1))

    def ballot(self, ballot, queries):
        return ballot.lowered(queries.pool_similarity(self.pool_neighbours)[:, None])


@dataclass(frozen=True)
class TrainCorrection(Step):
    """Each gallery vote loses its train image's own mean similarity to the pool: a train image that looks like
    clutter vouches less."""

    needs = frozenset({"neighbours", "pool"})
    refuses_non_landmarks = True
    pool_neighbours: int = setting(whole(1))

    def ballot(self, ballot, queries):
        return ballot.lowered(queries.gallery.correction(ballot.positions, self.pool_neighbours))


@dataclass(frozen=True)
class FrequencyBan(Step):
    """Every query whose landmark is the first answer of more than max_label_predictions test queries falls below
    every other, their order kept (smlyaka, GLR 2019, 3rd place): a landmark that many queries name is a "hub" that
    non-landmarks collect. Another set's queries count as the test queries each stands for (validation's
    non-landmarks for many: they are the test set's share of it)."""

    max_label_predictions: int = setting(whole(1))

    def ranking(self, ranking, queries):
        first = ranking.labels[:, 0]
        named, which = np.unique(first[first >= 0], return_inverse=True)
        counts = np.bincount(which, weights=queries.stands_for[first >= 0], minlength=len(named))
        banned = np.isin(ranking.labels, named[counts > self.max_label_predictions])
        finite = np.isfinite(ranking.confidences[:, 0])
        if not banned.any() or not finite.any():
            return ranking
        span = np.ptp(ranking.confidences[finite, 0])
        return ranking.with_confidences(np.where(banned, ranking.confidences - (span + 1.0), ranking.confidences))


STEPS = {
    "query_penalty": QueryPenalty,
    "train_correction": TrainCorrection,
    "frequency_ban": FrequencyBan,
}
