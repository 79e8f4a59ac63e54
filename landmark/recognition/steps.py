"""The steps of a recognition method (landmark.recognition.method), each a small class registered by name in STEPS.

A step changes what the queries found before the vote (`queries`: their nearest gallery images and similarities,
by query expansion, database-side augmentation or re-ranking), the ballot before the count (`ballot`: each vote's
label, its weight in choosing the label and its credit towards the label's confidence) or the ranking after it
(`ranking`), or several; what it does not define it leaves as it is. Every step's `queries` runs before any
`ballot`, in the method's order. A step's options are the fields of its settings model, read from params.yaml's
`recognize.steps.<name>` and checked as every setting is (landmark.settings), so a wrong one is one line naming it.

`needs` names what a step works on beyond the query itself: `neighbours` (gallery votes: the knn and blend bases
have them, softmax has not), `pool` (a non-landmark pool to compare with) and `photos` (the local features of the
query's and the gallery's photos: the local_features stage's). A method whose step lacks what it
needs is refused before any work (method.check_methods): a step never runs as if it had worked. A step that sets
`refuses_non_landmarks` lowers confidences so that one at or below 0 means "no landmark" (landmark predict says so).

A new step: a class here and a line in STEPS; its options go in params.yaml under recognize.steps.
"""

import math
from dataclasses import replace
from typing import Annotated, ClassVar

import numpy as np
from pydantic import PlainValidator

from landmark.recognition.ballot import count
from landmark.recognition.search import normalized
from landmark.settings import Fraction, NonNegative, OneOrMore, Positive, Section, whole


class Step(Section):
    needs: ClassVar[frozenset] = frozenset()
    refuses_non_landmarks: ClassVar[bool] = False

    def queries(self, queries):
        return queries

    def ballot(self, ballot, queries):
        return ballot

    def ranking(self, ranking, queries):
        return ranking

    def reaches_none(self, test_queries: int) -> str | None:
        """Why this step would change no answer on a test set of this size (None: it can change some)."""
        return None

    def widest(self, voters: int) -> int:
        """How many nearest gallery images of the query's own vector the step asks for (Queries.nearest; voters:
        the recognize.neighbours that vote), so that the first search finds them all."""
        return 0

    def for_photos(self) -> "Step":
        """This step as it runs on a user's few photos (landmark predict): itself, where no option of it is a share
        of the test set."""
        return self


class QueryPenalty(Step):
    """Each gallery vote loses the query's mean similarity to its nearest pool photos (Henkel & Singer, GLR 2020,
    1st place): a query that looks like clutter is less sure of any landmark."""

    needs = frozenset({"neighbours", "pool"})
    refuses_non_landmarks = True
    pool_neighbours: OneOrMore

    def ballot(self, ballot, queries):
        return ballot.lowered(queries.pool_similarity(self.pool_neighbours)[:, None])


class TrainCorrection(Step):
    """Each gallery vote loses its train image's own mean similarity to the pool: a train image that looks like
    clutter vouches less."""

    needs = frozenset({"neighbours", "pool"})
    refuses_non_landmarks = True
    pool_neighbours: OneOrMore

    def ballot(self, ballot, queries):
        return ballot.lowered(queries.gallery.correction(ballot.positions, self.pool_neighbours))


class FrequencyBan(Step):
    """Every query whose landmark is the first answer of more than max_label_predictions test queries falls below
    every other, their order kept (smlyaka, GLR 2019, 3rd place): a landmark that many queries name is a "hub" that
    non-landmarks collect. Another set's queries count as the test queries each stands for (validation's
    non-landmarks for many: they are the test set's share of it)."""

    max_label_predictions: OneOrMore

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


class QueryExpansion(Step):
    """αQE (Radenović et al. 2018; cirtorch): each query searches again as the L2-normalised sum of itself and its
    `neighbours` nearest gallery images, each weighted by its similarity to the power alpha. alpha 0 is Chum et
    al.'s average query expansion; a larger alpha trusts the nearest most."""

    needs = frozenset({"neighbours"})
    neighbours: OneOrMore
    alpha: NonNegative

    def queries(self, queries):
        similarities, positions = queries.nearest(self.neighbours)
        weights = np.where(positions >= 0, np.maximum(similarities, 0), 0) ** self.alpha
        found = np.einsum("qk,qkd->qd", weights, queries.gallery.vectors_at(positions))
        return queries.searched_again(normalized(queries.vectors + found))

    def widest(self, voters: int) -> int:
        return self.neighbours


class DatabaseAugmentation(Step):
    """αDBA (landmark.recognition.gallery.Gallery.augmented): every gallery image as the weighted sum of its
    `neighbours` nearest, itself first, so that an image shares what its landmark's other photos show; the queries
    search that gallery."""

    needs = frozenset({"neighbours"})
    neighbours: OneOrMore
    alpha: NonNegative

    def queries(self, queries):
        gallery = queries.gallery.augmented(queries.parts, self.neighbours, self.alpha)
        return queries.searched_again(queries.vectors, gallery)


class SuperGlobal(Step):
    """SuperGlobal's re-ranking (Shao et al., ICCV 2023) with global descriptors alone. Among a query's `shortlist`
    nearest, each candidate is refined into the weighted mean of itself (weight 1) and its `refine_neighbours`
    nearest candidates (weight beta times their similarity); the query is expanded into the element-wise maximum
    of its `refine_neighbours` best refined candidates; each candidate scores the mean of the query's and the
    expanded query's similarity to it, and the best of the new order vote."""

    needs = frozenset({"neighbours"})
    shortlist: OneOrMore
    refine_neighbours: OneOrMore
    beta: NonNegative

    def queries(self, queries):
        voters = queries.similarities.shape[1]
        _, positions = queries.nearest(self.widest(voters))
        scores = np.empty(positions.shape, dtype=np.float32)
        for start in range(0, len(positions), 256):  # bounds the queries × shortlist × shortlist similarities
            part = slice(start, start + 256)
            scores[part] = self.scores(queries.vectors[part], queries.gallery.vectors_at(positions[part]))
        scores[positions < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :voters]
        return replace(
            queries,
            similarities=np.take_along_axis(scores, order, axis=1),
            positions=np.take_along_axis(positions, order, axis=1),
        )

    def widest(self, voters: int) -> int:
        return max(self.shortlist, voters)

    def scores(self, query_vectors, candidates):
        """queries × shortlist: the re-ranked score of each candidate (candidates: queries × shortlist × d)."""
        among = np.einsum("qmd,qnd->qmn", candidates, candidates)
        kept = min(self.refine_neighbours + 1, among.shape[2])  # each candidate's nearest is itself
        nearest = np.argsort(-among, axis=2, kind="stable")[:, :, :kept]
        weights = self.beta * np.take_along_axis(among, nearest, axis=2)
        weights[:, :, 0] = 1.0
        neighbours = np.take_along_axis(candidates[:, None, :, :], nearest[..., None], axis=2)
        refined = (weights[..., None] * neighbours).sum(axis=2) / weights.sum(axis=2, keepdims=True)
        first = np.einsum("qd,qmd->qm", query_vectors, refined)
        best = np.argsort(-first, axis=1, kind="stable")[:, : self.refine_neighbours]
        expanded = np.take_along_axis(refined, best[..., None], axis=1).max(axis=1)
        return (first + np.einsum("qd,qmd->qm", expanded, refined)) / 2


class SpatialVerification(Step):
    """Geometric verification of the most confident answers (the GLDv2 paper; smlyaka's and bestfitting's GLR
    entries): the `share` most confident queries (of the test queries they stand for) are matched against their
    `neighbours` nearest gallery photos (landmark.recognition.verification), and a neighbour whose inliers reach
    `floor` adds min(inliers, cap) / cap to its vote and to its credit."""

    needs = frozenset({"neighbours", "photos"})
    share: Fraction
    neighbours: OneOrMore
    floor: Annotated[int, PlainValidator(whole(4))]  # a homography needs four matches
    cap: OneOrMore
    ratio: Fraction  # Lowe's ratio test of the SIFT matches
    max_error: Positive  # pixels from the homography an inlier may lie

    def ballot(self, ballot, queries):
        checked = most_confident(count(ballot).confidences[:, 0], queries.stands_for, self.share)
        columns = min(self.neighbours, ballot.positions.shape[1])
        positions = ballot.positions[checked, :columns]
        desc = f"verify {queries.name}" if queries.name else None
        found = queries.photos.inliers(checked, positions, self.ratio, self.max_error, desc)
        bonus = np.zeros_like(ballot.weights)
        bonus[checked, :columns] = np.where(found >= self.floor, np.minimum(found, self.cap) / self.cap, 0.0)
        return replace(ballot, weights=ballot.weights + bonus, credits=ballot.credits + bonus)

    def reaches_none(self, test_queries: int) -> str | None:
        if self.share * test_queries >= 1:
            return None
        least = math.ceil(10_000 / max(test_queries, 1)) / 10_000  # rounded up: it must still reach one query
        return f"share {self.share} of the {test_queries} test queries checks none; raise it to at least {least:g}"

    def for_photos(self) -> "SpatialVerification":
        """Checking every photo: the share is of the test set's queries, and a user's few photos are each worth the
        seconds."""
        return self.model_copy(update={"share": 1.0})


def most_confident(confidences, stands_for, share: float) -> np.ndarray:
    """The queries, most confident first, that together stand for `share` of the test queries the set stands for."""
    order = np.argsort(-confidences, kind="stable")
    order = order[np.isfinite(confidences[order])]
    within = np.cumsum(stands_for[order]) <= share * stands_for.sum() + 1e-9
    return order[within]


STEPS = {
    "query_penalty": QueryPenalty,
    "train_correction": TrainCorrection,
    "frequency_ban": FrequencyBan,
    "aqe": QueryExpansion,
    "dba": DatabaseAugmentation,
    "superglobal": SuperGlobal,
    "verify": SpatialVerification,
}
