"""The figures of recognition: per method, the validation GAP the submission chooses by (the dev set's landmarks,
of every class with two images or more, with the held-out non-landmarks, so refusing a non-landmark counts; each
query weighted as the test queries it stands for: validation_weights), the dev GAP (landmarks only), and, where
the data has a test solution, what the test set says, reported only."""

import numpy as np
import pandas as pd

from landmark.metrics import gap_of_ranked, global_average_precision, rank_predictions
from landmark.submission import score


def _predicted(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions.loc[predictions["landmark_id"] >= 0, ["id", "landmark_id", "confidence"]]


def validation_solution(rows: pd.DataFrame) -> pd.DataFrame:
    """The known answers of validation queries: the dev image's landmark, nothing for a held-out non-landmark."""
    return pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "landmarks": [[int(label)] if label >= 0 else [] for label in rows["landmark_id"]],
        }
    )


def validation_weights(landmark_ids, nonlandmark_share: float, dev_weighting: str) -> np.ndarray:
    """How much each validation query counts, as the test queries it stands for. A dev landmark counts once
    (dev_weighting `images`), or 1 / its class's dev queries (`classes`: each class once, for a test whose landmarks
    are spread over the classes rather than over their images). The held-out non-landmarks together count
    nonlandmark_share of the whole (GAP ranks every prediction, so their share decides what refusing one is worth:
    a validation set with fewer of them than the test set would undervalue it)."""
    landmark_ids = np.asarray(landmark_ids)
    is_landmark = landmark_ids >= 0
    weights = np.ones(len(landmark_ids))
    if dev_weighting == "classes":
        _, which, counts = np.unique(landmark_ids[is_landmark], return_inverse=True, return_counts=True)
        weights[is_landmark] = 1 / counts[which]
    landmarks, others = weights[is_landmark].sum(), int((~is_landmark).sum())
    if others and landmarks and nonlandmark_share < 1:
        weights[~is_landmark] = nonlandmark_share / (1 - nonlandmark_share) * landmarks / others
    return weights


def dev_weighting_note(dev_labels, dev_weighting: str) -> str | None:
    """The line to print where `dev_weighting: classes` cannot change the validation GAP: every dev class has one
    dev query, so each counts once either way (None where it can)."""
    if dev_weighting == "classes" and pd.Series(dev_labels).is_unique:
        return "recognize.dev_weighting: classes changes nothing here: every dev class has one dev image, as images"
    return None


def weighted_gap(predicted: pd.DataFrame, answers: pd.DataFrame, weights: np.ndarray) -> float:
    """GAP of validation predictions with each query counting its weight (validation_weights, in answers' order)."""
    is_landmark = (answers["landmarks"].map(len) > 0).to_numpy()
    query, correct = rank_predictions(predicted, answers)
    return gap_of_ranked(correct, weights[is_landmark].sum(), weights[query])


def test_figures(predicted: pd.DataFrame, solution: pd.DataFrame, kept_classes, learned_classes) -> dict:
    """Test GAP (all, and per Usage split), test GAP with non-landmark queries left out, how many test landmarks
    are named right, how many of those are of classes the filter dropped (the long tail only retrieval can name),
    and how many of classes the variant's classifier never learned (what only the gallery knows: the filter's
    tail, and the landmarks of data.gallery_photos)."""
    figures = {
        f"test_{key}" if key != "gap" else "test_gap": value for key, value in score(predicted, solution).items()
    }
    figures["test_gap_landmarks_only"] = score(predicted, solution, ignore_non_landmarks=True)["gap"]
    scored = solution[(solution["Usage"] != "Ignored") & (solution["landmarks"].map(len) > 0)]
    truth = scored.explode("landmarks").astype({"landmarks": np.int64})
    right = predicted.merge(truth, left_on=["id", "landmark_id"], right_on=["id", "landmarks"])
    figures["test_landmarks"] = len(scored)
    figures["correct"] = int(right["id"].nunique())
    figures["correct_below_threshold"] = int(right.loc[~right["landmark_id"].isin(kept_classes), "id"].nunique())
    figures["correct_unlearned"] = int(right.loc[~right["landmark_id"].isin(learned_classes), "id"].nunique())
    return figures


def recognition_scores(predictions, validation: tuple, solution, classes: tuple, methods) -> dict:
    """method -> its figures (module docstring); predictions as the recognize stage writes them; validation: its
    rows (id, landmark_id) and what each counts (validation_weights); classes: those the filter kept and those the
    classifier learned."""
    validation_rows, weights = validation
    answers = validation_solution(validation_rows)
    dev = answers[answers["landmarks"].map(len) > 0]
    results = {}
    for method in methods:
        mine = predictions[predictions["method"] == method]
        validation = _predicted(mine[mine["query_set"] == "validation"])
        figures = {
            "validation_gap": weighted_gap(validation, answers, weights),
            "dev_gap": global_average_precision(validation[validation["id"].isin(dev["id"])], dev),
        }
        if solution is not None:
            figures |= test_figures(_predicted(mine[mine["query_set"] == "test"]), solution, *classes)
        results[method] = figures
    return results


def shown_queries(sets: dict, gallery, solution, per_kind: int) -> pd.DataFrame:
    """A fixed sample of queries (of validation: landmarks and non-landmarks; of test: the same where a solution
    says which is which) with their nearest gallery images: what reports/retrieval.png shows. sets: name -> (rows,
    Queries), as landmark.recognition.sets.query_sets gives them."""
    truths = {"validation": sets["validation"][0]["landmark_id"].to_numpy()}
    test_ids = sets["test"][0]["id"]
    if solution is not None:
        first = solution.set_index("id")["landmarks"].map(lambda labels: labels[0] if labels else -1)
        truths["test"] = first.reindex(test_ids).fillna(-1).to_numpy(np.int64)
    else:
        truths["test"] = np.full(len(test_ids), -1)
    rng = np.random.default_rng(0)
    rows = []
    for name, (frame, queries) in sets.items():
        truth, labels, similarities = truths[name], queries.labels, queries.similarities
        for kind in (truth >= 0, truth < 0):
            for query in np.sort(rng.permutation(np.flatnonzero(kind))[:per_kind]):
                for rank, (position, similarity) in enumerate(
                    zip(queries.positions[query], similarities[query], strict=True)
                ):
                    if position >= 0:
                        rows.append(
                            (name, frame["id"].iat[query], int(truth[query]), rank + 1, gallery.ids[position],
                             int(labels[query, rank]), float(similarity))
                        )  # fmt: skip
    columns = ["query_set", "query_id", "query_landmark", "rank", "neighbour_id", "neighbour_landmark", "similarity"]
    return pd.DataFrame(rows, columns=columns)
