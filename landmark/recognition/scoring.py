"""The figures of recognition: per method, the validation GAP the submission chooses by (the dev set's landmarks,
of every class with two images or more, with the held-out non-landmarks, so refusing a non-landmark counts; each
non-landmark weighted so that they make the test set's expected share of the queries), the dev GAP (landmarks
only), and, where the data has a test solution, what the test set says, reported only."""

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


def nonlandmark_weight(landmarks: int, others: int, nonlandmark_share: float) -> float:
    """How many queries each of `others` non-landmark queries counts for, so that they make nonlandmark_share of
    all queries beside `landmarks` landmark queries (1 where there is nothing to weigh)."""
    if not others or not landmarks or nonlandmark_share >= 1:
        return 1.0
    return nonlandmark_share / (1 - nonlandmark_share) * landmarks / others


def weighted_gap(predicted: pd.DataFrame, answers: pd.DataFrame, nonlandmark_share: float) -> float:
    """GAP of validation predictions with each non-landmark query taking as many ranks as makes the non-landmarks
    nonlandmark_share of all queries (GAP ranks every prediction, so their share decides what suppression is
    worth: a validation set with fewer of them than the test set would undervalue it)."""
    is_landmark = (answers["landmarks"].map(len) > 0).to_numpy()
    landmarks = int(is_landmark.sum())
    weight = nonlandmark_weight(landmarks, len(is_landmark) - landmarks, nonlandmark_share)
    query, correct = rank_predictions(predicted, answers)
    return gap_of_ranked(correct, landmarks, np.where(is_landmark[query], 1.0, weight))


def test_figures(predicted: pd.DataFrame, solution: pd.DataFrame, kept_classes) -> dict:
    """Test GAP (all, and per Usage split), test GAP with non-landmark queries left out, how many test landmarks
    are named right and how many of those are of classes the filter dropped (the long tail only retrieval can
    name)."""
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
    return figures


def recognition_scores(predictions, validation_rows, solution, kept_classes, methods, nonlandmark_share) -> dict:
    """method -> its figures (module docstring); predictions as the recognize stage writes them."""
    answers = validation_solution(validation_rows)
    dev = answers[answers["landmarks"].map(len) > 0]
    results = {}
    for method in methods:
        mine = predictions[predictions["method"] == method]
        validation = _predicted(mine[mine["query_set"] == "validation"])
        figures = {
            "validation_gap": weighted_gap(validation, answers, nonlandmark_share),
            "dev_gap": global_average_precision(validation[validation["id"].isin(dev["id"])], dev),
        }
        if solution is not None:
            figures |= test_figures(_predicted(mine[mine["query_set"] == "test"]), solution, kept_classes)
        results[method] = figures
    return results


def shown_queries(sets: dict, gallery, solution, per_kind: int = 3) -> pd.DataFrame:
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
                for rank, (position, similarity) in enumerate(zip(queries.positions[query], similarities[query])):
                    if position >= 0:
                        rows.append(
                            (name, frame["id"].iat[query], int(truth[query]), rank + 1, gallery.ids[position],
                             int(labels[query, rank]), float(similarity))
                        )  # fmt: skip
    columns = ["query_set", "query_id", "query_landmark", "rank", "neighbour_id", "neighbour_landmark", "similarity"]
    return pd.DataFrame(rows, columns=columns)
