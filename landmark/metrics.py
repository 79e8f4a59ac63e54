"""Global Average Precision (GAP), the Kaggle Landmark Recognition metric, and the paper's per-batch GAP.

GAP = 1/M · Σ_i P(i)·rel(i) over one prediction per query, sorted by confidence (Perronnin et al. 2009, as
used by the Kaggle GLR challenges). M counts the queries that show a landmark, predicted or not; a prediction
on a non-landmark query is wrong but still takes a rank.
"""
import numpy as np
import pandas as pd


def gap_of_ranked(correct: np.ndarray, num_landmark_queries: int) -> float:
    """GAP of predictions already sorted by descending confidence; `correct` is a boolean array."""
    if num_landmark_queries == 0:
        return 0.0
    correct = np.asarray(correct, dtype=np.float64)
    precision_at_rank = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    return float(np.sum(precision_at_rank * correct) / num_landmark_queries)


def global_average_precision(
    predictions: pd.DataFrame, solution: pd.DataFrame, ignore_non_landmarks: bool = False
) -> float:
    """Kaggle's GAP.

    predictions: columns id, landmark_id, confidence; one row per query at most (empty predictions dropped).
    solution: columns id, landmarks (a list of ints, empty for a non-landmark query), one row per query.
    Ties in confidence are broken by id, then landmark_id, ascending, as the official scorer does.
    """
    truth = solution[["id", "landmarks"]].explode("landmarks").dropna()
    truth_pairs = pd.MultiIndex.from_arrays([truth["id"].to_numpy(), truth["landmarks"].to_numpy(np.int64)])
    num_landmark_queries = int(solution["landmarks"].map(len).astype(bool).sum())

    predictions = predictions[predictions["id"].isin(solution["id"])]
    if ignore_non_landmarks:
        predictions = predictions[predictions["id"].isin(truth["id"])]
    ids = predictions["id"].to_numpy().astype(str)
    labels = predictions["landmark_id"].to_numpy(np.int64)
    confidences = predictions["confidence"].to_numpy(np.float64)
    correct = pd.MultiIndex.from_arrays([ids, labels]).isin(truth_pairs)
    order = np.lexsort((labels, ids, -confidences))
    return gap_of_ranked(correct[order], num_landmark_queries)


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
