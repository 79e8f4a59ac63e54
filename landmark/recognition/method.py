"""A recognition method, parsed once from its name: a base casts the ballot, the steps change it in order, the
count ranks each query's landmarks, and the steps may change that ranking. The recognize stage and `landmark
predict` both go through `Method.rank`.

`knn+query_penalty+frequency_ban` is the base `knn` with the steps `query_penalty` and `frequency_ban`
(landmark.recognition.steps). The bases (BASES):
- `softmax`, the paper's: the classifier votes alone, with its probability;
- `knn`: each of the k nearest gallery images votes for its landmark with its similarity (smlyaka, GLR 2019);
- `blend`: knn, with the classifier as one more voter weighted by blend_weight times its probability.

The ballot and its count: landmark.recognition.ballot.
"""

from dataclasses import dataclass, replace

import numpy as np

from landmark.errors import UserError
from landmark.recognition.ballot import Ballot, Ranking, count
from landmark.recognition.steps import STEPS
from landmark.settings import parse


def classifier_votes(queries, weight: float) -> Ballot:
    labels = queries.classifier_labels.astype(np.int64)[:, None]
    weights = weight * queries.classifier_confidences.astype(np.float64)[:, None]
    return Ballot(labels, weights, weights.copy(), np.full(labels.shape, -1, dtype=np.int64))


def gallery_votes(queries) -> Ballot:
    weights = queries.similarities.astype(np.float64)
    return Ballot(queries.labels, weights, weights.copy(), queries.positions)


def softmax(queries, blend_weight: float) -> Ballot:
    return classifier_votes(queries, 1.0)


def knn(queries, blend_weight: float) -> Ballot:
    return gallery_votes(queries)


def blend(queries, blend_weight: float) -> Ballot:
    near, classifier = gallery_votes(queries), classifier_votes(queries, blend_weight)
    return Ballot(
        np.concatenate([near.labels, classifier.labels], axis=1),
        np.concatenate([near.weights, classifier.weights], axis=1),
        np.concatenate([near.credits, classifier.credits], axis=1),
        np.concatenate([near.positions, classifier.positions], axis=1),
    )


BASES = {"softmax": softmax, "knn": knn, "blend": blend}
BASE_PROVIDES = {"softmax": frozenset(), "knn": frozenset({"neighbours"}), "blend": frozenset({"neighbours"})}
DATA_PROVIDES = frozenset({"pool", "photos"})  # what the data brings, or not: checked against it in check_methods


@dataclass(frozen=True)
class Method:
    name: str
    base: str
    steps: tuple  # (name, step) in order
    blend_weight: float

    @classmethod
    def parse(cls, name: str, settings, where: str = "params.yaml recognize.methods") -> "Method":
        """The method `name` with the options of params.yaml's recognize section (settings); a name it cannot
        parse is one line naming `where`."""
        base, *step_names = str(name).split("+")
        if base not in BASES:
            raise UserError(f"{where}: {name!r} must start with {', '.join(BASES)}")
        unknown = [step for step in step_names if step not in STEPS]
        if unknown:
            raise UserError(f"{where}: {unknown[0]!r} in {name!r} is not {', '.join(STEPS)}")
        if len(set(step_names)) < len(step_names):
            raise UserError(f"{where}: {name!r} names a step twice")
        unknown = [step for step in settings.steps if step not in STEPS]
        if unknown:
            raise UserError(f"params.yaml recognize.steps.{unknown[0]}: no such step; choose from {', '.join(STEPS)}")
        steps = tuple(
            (step, parse(STEPS[step], settings.steps.get(step) or {}, f"recognize.steps.{step}")) for step in step_names
        )
        for step, built in steps:
            lacking = built.needs - BASE_PROVIDES[base] - DATA_PROVIDES
            if lacking:
                raise UserError(
                    f"{where}: {name!r}: {step} needs {', '.join(sorted(lacking))}, which {base} has none of; "
                    f"start it with {' or '.join(key for key, has in BASE_PROVIDES.items() if has >= lacking)}"
                )
        return cls(name, base, steps, settings.blend_weight)

    def for_photos(self) -> "Method":
        """This method as it runs on a user's few photos (landmark predict): each step's for_photos()."""
        return replace(self, steps=tuple((name, step.for_photos()) for name, step in self.steps))

    def widest(self, voters: int) -> int:
        """The most nearest gallery images of a query's own vector any step asks for (Step.widest)."""
        return max((step.widest(voters) for _, step in self.steps), default=0)

    @property
    def refuses_non_landmarks(self) -> bool:
        return any(step.refuses_non_landmarks for _, step in self.steps)

    def searched(self, queries):
        """The queries with what the steps found for them (query expansion, re-ranking...): who votes."""
        for _, step in self.steps:
            queries = step.queries(queries)
        return queries

    def rank(self, queries, top_k: int = 1) -> Ranking:
        """The queries' top_k landmarks with their confidences, best first."""
        return self.voted(queries, top_k)[1]

    def voted(self, queries, top_k: int = 1) -> tuple:
        """(the queries as they voted, after the steps' query expansion or re-ranking; their rank())."""
        queries = self.searched(queries)
        ballot = BASES[self.base](queries, self.blend_weight)
        for _, step in self.steps:
            ballot = step.ballot(ballot, queries)
        ranking = count(ballot, top_k)
        for _, step in self.steps:
            ranking = step.ranking(ranking, queries)
        return queries, ranking


def check_reach(methods, test_queries: int) -> None:
    """Refuse in one line, before any method runs, a step that would change no answer on a test set of this size
    (a row that would quietly equal the one without it)."""
    for method in methods:
        for step, built in method.steps:
            why = built.reaches_none(test_queries)
            if why:
                raise UserError(
                    f"params.yaml recognize.steps.{step}: {why}, or take {step} out of recognize.methods "
                    f"({method.name} would equal {method.name.replace('+' + step, '')})"
                )


def check_methods(settings, shortfalls: dict) -> list:
    """The methods of recognize.methods, parsed; refused in one line, before any work, where a step needs data
    the run will not have or the submission is to be chosen by a validation that will have no non-landmark.
    settings: the parsed params (landmark.settings.Settings); shortfalls: landmark.settings.nonlandmark_shortfalls.
    Every step's options are checked, named by a method or not: a `-S` that adds a method later finds them sound."""
    methods = [Method.parse(name, settings.recognize) for name in settings.recognize.methods]
    for step, options in settings.recognize.steps.items():
        parse(STEPS[step], options, f"recognize.steps.{step}")
    for method in methods:
        for step, built in method.steps:
            for need in sorted(built.needs & set(shortfalls)):
                key, why, fix = shortfalls[need]
                raise UserError(
                    f"params.yaml {key}: {why}, which {method.name} in recognize.methods needs for {step}; {fix}, "
                    f"or take {step} out of recognize.methods"
                )
    if settings.submission.method == "best" and "holdout" in shortfalls:
        key, why, fix = shortfalls["holdout"]
        raise UserError(
            f"params.yaml {key}: {why}, which submission.method: best needs to weigh what suppression is worth; "
            f"{fix}, or name the method in submission.method"
        )
    return methods
