"""Global Average Precision (GAP), the Kaggle Landmark Recognition metric, and the paper's per-batch GAP.

GAP = 1/M · Σ_i P(i)·rel(i) over one prediction per query, sorted by confidence (Perronnin et al. 2009, as
used by the Kaggle GLR challenges). M counts the queries that show a landmark, predicted or not; a prediction
on a non-landmark query is wrong but still takes a rank.
"""

import numpy as np
import pandas as pd


def gap_of_ranked(correct: np.ndarray, num_landmark_queries: float, weights=None) -> float:
    """GAP of predictions already sorted by descending confidence; `correct` is a boolean array. With weights (a
    validation set weighted to the test set it stands for): precision at a rank is the weight of the right
    predictions so far over the weight of all so far, each right one adds it times its weight, and
    num_landmark_queries is the landmark queries' total weight. A wrong prediction weighted w thus takes w ranks,
    as if its query were there w times."""
    if num_landmark_queries == 0:
        return 0.0
    correct = np.asarray(correct, dtype=np.float64)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    ranked = np.cumsum(weights)  # a query weighted 0 (a non-landmark share of 0) takes no rank
    precision_at_rank = np.divide(np.cumsum(correct * weights), ranked, out=np.zeros(len(ranked)), where=ranked > 0)
    return float(np.sum(precision_at_rank * correct * weights) / num_landmark_queries)


def rank_predictions(predictions: pd.DataFrame, solution: pd.DataFrame):
    """Match each prediction to its query and sort them as the official scorer does.

    predictions: columns id, landmark_id, confidence; one row per query at most (empty predictions dropped).
    solution: columns id, landmarks (a list of ints, empty for a non-landmark query), one row per query.
    Returns, in rank order (confidence descending, ties by id then landmark_id ascending), each prediction's
    row in the solution and whether it is correct. Predictions for ids outside the solution are dropped.
    """
    solution_ids = pd.Index(solution["id"].to_numpy(dtype=object), dtype=object)
    truth_counts = np.fromiter(map(len, solution["landmarks"]), np.int64, len(solution))
    query = solution_ids.get_indexer(predictions["id"].to_numpy(dtype=object))
    scored = query >= 0
    query = query[scored]
    labels = predictions["landmark_id"].to_numpy(np.int64)[scored]
    confidences = predictions["confidence"].to_numpy(np.float64)[scored]

    # (query, label) pairs as one int64 key each, so membership is one vectorised isin.
    truth_query = np.repeat(np.arange(len(solution)), truth_counts)
    truth_labels = np.fromiter((label for labels in solution["landmarks"] for label in labels), np.int64)
    low = min(labels.min(initial=0), truth_labels.min(initial=0))
    span = max(labels.max(initial=0), truth_labels.max(initial=0)) - low + 1
    correct = np.isin(query * span + (labels - low), truth_query * span + (truth_labels - low))

    order = np.lexsort((labels, _tie_rank(solution_ids.to_numpy()[query], confidences), -confidences))
    return query[order], correct[order]


def gap_of_queries(query, correct, solution, selected=None, ignore_non_landmarks=False) -> float:
    """GAP over the solution rows in `selected` (a boolean mask; all rows by default), from rank_predictions.

    A subset of a ranked list is still ranked, so the Public and Private splits reuse one sort.
    """
    is_landmark = np.fromiter(map(len, solution["landmarks"]), np.int64, len(solution)) > 0
    selected = np.ones(len(solution), dtype=bool) if selected is None else np.asarray(selected, dtype=bool)
    keep = selected[query] & (is_landmark[query] if ignore_non_landmarks else True)
    return gap_of_ranked(correct[keep], int(np.count_nonzero(is_landmark & selected)))


def global_average_precision(
    predictions: pd.DataFrame, solution: pd.DataFrame, ignore_non_landmarks: bool = False
) -> float:
    """Kaggle's GAP of predictions against a solution (see rank_predictions for the columns).

    With ignore_non_landmarks, predictions on queries that show no landmark are dropped instead of ranked.
    """
    query, correct = rank_predictions(predictions, solution)
    return gap_of_queries(query, correct, solution, ignore_non_landmarks=ignore_non_landmarks)


def _tie_rank(ids: np.ndarray, confidences: np.ndarray) -> np.ndarray:
    """The rank of each id among the predictions that share its confidence (0 elsewhere): sorting strings only
    where confidences tie keeps a 100k-row sort fast."""
    _, inverse, counts = np.unique(confidences, return_inverse=True, return_counts=True)
    tied = counts[inverse] > 1
    rank = np.zeros(len(ids), dtype=np.int64)
    rank[tied] = pd.factorize(ids[tied], sort=True)[0]
    return rank


def batch_gap(confidences: np.ndarray, correct: np.ndarray) -> float:
    """GAP of one mini-batch in which every query shows a landmark (M = batch size), as the paper logged it.

    The stable sort keeps batch order among ties, so the figure is deterministic.
    """
    order = np.argsort(-np.asarray(confidences), kind="stable")
    return gap_of_ranked(np.asarray(correct)[order], len(order))


def mean_batch_gap(confidences: np.ndarray, correct: np.ndarray, batch_size: int) -> float:
    """The paper's dev GAP: batch_gap averaged over consecutive mini-batches (not Kaggle's metric)."""
    starts = range(0, len(confidences), batch_size)
    return float(np.mean([batch_gap(confidences[s : s + batch_size], correct[s : s + batch_size]) for s in starts]))


def dev_metrics(ids, targets, classes, confidences, losses, paper_batch_size: int) -> dict:
    """Kaggle GAP (every dev image shows a landmark), the paper's per-batch GAP, loss and top-1 accuracy."""
    correct = classes == targets
    predictions = pd.DataFrame({"id": ids, "landmark_id": classes, "confidence": confidences})
    solution = pd.DataFrame({"id": ids, "landmarks": [[int(target)] for target in targets]})
    return {
        "gap": global_average_precision(predictions, solution),
        "batch_gap": mean_batch_gap(confidences, correct, paper_batch_size),
        "loss": float(np.mean(losses)),
        "accuracy": float(np.mean(correct)),
        "images": len(ids),
    }
