import numpy as np
import pandas as pd
import pytest

from landmark.metrics import batch_gap, gap_of_ranked, global_average_precision, mean_batch_gap


def predictions(rows):
    return pd.DataFrame(rows, columns=["id", "landmark_id", "confidence"])


def solution(truth):
    return pd.DataFrame({"id": list(truth), "landmarks": [list(labels) for labels in truth.values()]})


def reference_gap(rows, truth, ignore_non_landmarks=False):
    """GAP written the slow, obvious way from the Kaggle definition."""
    rows = [row for row in rows if row[0] in truth and (truth[row[0]] or not ignore_non_landmarks)]
    rows.sort(key=lambda row: (-row[2], row[0], row[1]))
    hits, total = 0, 0.0
    for rank, (query, label, _) in enumerate(rows, start=1):
        if label in truth[query]:
            hits += 1
            total += hits / rank
    return total / sum(1 for labels in truth.values() if labels)


def test_all_correct_is_one():
    truth = {"a": [1], "b": [2]}
    assert global_average_precision(predictions([("a", 1, 0.9), ("b", 2, 0.1)]), solution(truth)) == 1.0


def test_hand_computed_ranking():
    # ranks: a (right), b (wrong), c (right): (1/1 + 2/3) / 3 landmark queries (d has no prediction)
    truth = {"a": [1], "b": [2], "c": [3], "d": [4]}
    rows = [("a", 1, 0.9), ("b", 5, 0.8), ("c", 3, 0.7)]
    assert global_average_precision(predictions(rows), solution(truth)) == pytest.approx((1 + 2 / 3) / 4, abs=1e-15)


def test_prediction_on_non_landmark_query_takes_a_rank():
    truth = {"a": [1], "junk": []}
    rows = [("junk", 7, 0.99), ("a", 1, 0.5)]
    assert global_average_precision(predictions(rows), solution(truth)) == 0.5
    assert global_average_precision(predictions(rows), solution(truth), ignore_non_landmarks=True) == 1.0


def test_non_landmark_queries_do_not_count_in_m():
    truth = {"a": [1], "junk1": [], "junk2": []}
    assert global_average_precision(predictions([("a", 1, 0.3)]), solution(truth)) == 1.0


def test_weighted_gap_is_weighted_precision():
    # A wrong prediction weighted 2 takes two ranks: as the list wrong, wrong, right, right
    copies = reference_gap([("w1", 9, 4), ("w2", 9, 3), ("a", 1, 2), ("b", 2, 1)],
                           {"w1": [], "w2": [], "a": [1], "b": [2]})  # fmt: skip
    assert gap_of_ranked([False, True, True], 2, [2, 1, 1]) == pytest.approx(copies)
    # A right one weighted 1/2: precision at each rank is the weight right so far over the weight so far, and each
    # right prediction adds it times its weight, over the landmarks' total weight (0.5 + 1)
    assert gap_of_ranked([False, True, True], 1.5, [1, 0.5, 1]) == pytest.approx((0.5 * 0.5 / 1.5 + 1.5 / 2.5) / 1.5)
    # a query weighted 0 (a non-landmark share of 0) takes no rank, also when it comes first
    assert gap_of_ranked([False, True], 1, [0, 1]) == 1.0


def test_ties_break_by_id_then_class():
    truth = {"a": [1], "b": [2]}
    # same confidence: "a" ranks first whatever the row order
    wrong_first = predictions([("b", 2, 0.5), ("a", 9, 0.5)])
    assert global_average_precision(wrong_first, solution(truth)) == pytest.approx(0.5 * 1 / 2)
    right_first = predictions([("b", 9, 0.5), ("a", 1, 0.5)])
    assert global_average_precision(right_first, solution(truth)) == pytest.approx(0.5 * 1)


def test_multi_label_truth():
    truth = {"a": [1, 2, 3], "b": [4]}
    rows = [("a", 3, 0.9), ("b", 1, 0.8)]
    assert global_average_precision(predictions(rows), solution(truth)) == 0.5


def test_empty_predictions_and_unknown_ids_are_ignored():
    truth = {"a": [1], "b": [2]}
    rows = [("a", 1, 0.9), ("zzz", 1, 0.95)]
    assert global_average_precision(predictions(rows), solution(truth)) == 0.5


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    ids = [f"{index:016x}" for index in range(400)]
    truth = {}
    for query in ids:
        kind = rng.uniform()
        truth[query] = [] if kind < 0.5 else list(rng.choice(10, size=1 + int(kind > 0.9), replace=False))
    rows = [
        (query, int(rng.integers(0, 10)), float(np.round(rng.uniform(), 1)))  # rounded: many ties
        for query in ids
        if rng.uniform() < 0.8
    ]
    for ignore in (False, True):
        expected = reference_gap(rows, truth, ignore)
        assert global_average_precision(predictions(rows), solution(truth), ignore) == pytest.approx(
            expected, abs=1e-12
        )


def test_batch_gap_and_its_mean():
    confidences = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, False, True, False])
    assert batch_gap(confidences, correct) == pytest.approx((1 + 2 / 3) / 4)
    assert mean_batch_gap(confidences, correct, batch_size=2) == pytest.approx((0.5 + 0.5) / 2)
