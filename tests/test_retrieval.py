"""Recognition by retrieval: voting, the three non-landmark suppressions and the faiss indexes, on hand-built
vectors whose answers are known."""

import faiss
import numpy as np
import pandas as pd
import pytest

from landmark.errors import UserError
from landmark.predict import landmark_names
from landmark.retrieval import (
    Neighbours,
    Whitening,
    build_index,
    frequency_ban,
    mean_similarity,
    ranked_votes,
    read_index,
    recognize,
    search,
    vote,
    write_index,
)
from landmark.scoring import recognition_scores
from landmark.settings import parse_method


def unit(*rows):
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_vote_sums_the_similarities_of_each_label():
    labels = np.array([[1, 2, 1], [3, -1, 3], [5, 6, 7], [-1, -1, -1]])
    weights = np.array([[0.9, 0.8, 0.5], [0.2, 0.9, 0.3], [0.4, 0.4, 0.4], [0.0, 0.0, 0.0]])
    chosen, confidence = vote(labels, weights)
    assert chosen.tolist() == [1, 3, 5, -1]  # 1.4 beats 0.8; -1 does not vote; a tie goes to the nearer neighbour
    assert confidence[:3] == pytest.approx([1.4, 0.5, 0.4]) and confidence[3] == -np.inf


def neighbours(gallery, gallery_labels, queries, pool, k):
    gallery_index, pool_index = build_index(gallery, 10**6, "unused"), build_index(pool, 10**6, "unused")
    similarities, positions = search(gallery_index, queries, k)
    penalty = mean_similarity(pool_index, queries, k=1)
    classifier = np.full(len(queries), -1), np.zeros(len(queries))
    found = Neighbours(similarities, positions, gallery_labels, penalty, *classifier)
    return found, mean_similarity(pool_index, gallery, k=1)


def test_knn_on_a_faiss_index_gives_the_voted_label_and_its_summed_similarity():
    gallery = unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.8, 0, 0.2])
    labels = np.array([10, 10, 20, 30])
    query = unit([1, 0.05, 0])
    found, _ = neighbours(gallery, labels, query, unit([0, 0, 1]), k=3)
    label, confidence = recognize("knn", found, None, max_predictions=10, blend_weight=1.0)
    expected = float((gallery[:2] @ query[0]).sum())  # the two images of 10; 30's one vote is less
    assert label.tolist() == [10] and confidence[0] == pytest.approx(expected, abs=1e-6)


def ranks_landmark_first(labels, confidences, landmark, non_landmark):
    return labels[landmark] >= 0 and (labels[non_landmark] < 0 or confidences[landmark] > confidences[non_landmark])


def test_query_penalty_moves_a_query_that_resembles_the_pool_below_a_landmark():
    # A "hub" class H near e2 collects a non-landmark query that also lies next to the pool's photos.
    gallery = unit([1, 0, 0, 0], [1, 0.1, 0, 0], [0, 1, 0, 0], [0, 1, 0.05, 0])
    labels = np.array([1, 1, 2, 2])
    queries = unit([1, 0.6, 0, 0], [0, 1, 0.02, 0])  # the landmark (less alike its class), the non-landmark
    found, train_penalty = neighbours(gallery, labels, queries, unit([0, 1, 0.01, 0]), k=2)
    plain = recognize("knn", found, train_penalty, 10, 1.0)
    penalised = recognize("knn+query_penalty", found, train_penalty, 10, 1.0)
    assert not ranks_landmark_first(*plain, 0, 1) and ranks_landmark_first(*penalised, 0, 1)


def test_train_correction_moves_a_query_voted_by_clutter_like_train_images_below_a_landmark():
    # H's train images look like the pool (e3); the non-landmark query does not itself, so only the train side sees it.
    gallery = unit([1, 0, 0, 0], [1, 0, 0, 0.4], [0, 1, 1, 0], [0, 1, 1, 0.1])
    labels = np.array([1, 1, 2, 2])
    queries = unit([1, 0, 0, 3], [0, 1, 0, 0])
    found, train_penalty = neighbours(gallery, labels, queries, unit([0, 0, 1, 0]), k=2)
    assert found.penalty[1] < 0.01  # the query itself is far from the pool
    plain = recognize("knn", found, train_penalty, 10, 1.0)
    corrected = recognize("knn+train_correction", found, train_penalty, 10, 1.0)
    assert not ranks_landmark_first(*plain, 0, 1) and ranks_landmark_first(*corrected, 0, 1)


def test_frequency_ban_moves_a_label_predicted_too_often_below_the_rest_keeping_its_order():
    labels = np.array([7, 7, 7, 3, 7, -1])
    confidences = np.array([0.9, 0.95, 0.8, 0.5, 0.85, -np.inf])
    banned = frequency_ban(labels, confidences, max_predictions=3)
    assert banned[3] == 0.5 and (banned[[0, 1, 2, 4]] < 0.5).all()
    assert np.argsort(-banned[[0, 1, 2, 4]]).tolist() == np.argsort(-confidences[[0, 1, 2, 4]]).tolist()
    assert frequency_ban(labels, confidences, max_predictions=4).tolist() == confidences.tolist()


def test_blend_lets_the_classifier_vote_with_its_probability():
    gallery = unit([1, 0, 0], [0, 1, 0])
    found, _ = neighbours(gallery, np.array([1, 2]), unit([1, 0.9, 0]), unit([0, 0, 1]), k=2)
    found.classifier_labels, found.classifier_confidences = np.array([2]), np.array([0.9])
    assert recognize("knn", found, None, 10, 1.0)[0].tolist() == [1]
    label, confidence = recognize("blend", found, None, 10, 1.0)
    assert label.tolist() == [2] and confidence[0] == pytest.approx(found.similarities[0, 1] + 0.9, abs=1e-6)
    assert recognize("softmax", found, None, 10, 1.0)[0].tolist() == [2]


def clustered(classes, per_class, dimension, noise, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dimension))
    vectors = np.repeat(centres, per_class, axis=0) + noise * rng.normal(size=(classes * per_class, dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,PQ16x4fs,Refine(SQ8)"])
def test_approximate_search_finds_the_exact_nearest_neighbour_above_the_recall_bar(tmp_path, factory):
    gallery = clustered(200, 20, 32, 0.3, seed=0)
    queries = clustered(200, 20, 32, 0.3, seed=0)[::7] + 0.02
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = build_index(gallery, exact_below=10**6, factory=factory)
    approximate = build_index(gallery, exact_below=1000, factory=factory)
    assert type(exact).__name__ == "IndexFlatIP" and type(approximate).__name__ != "IndexFlatIP"
    write_index(approximate, tmp_path / "gallery.faiss")
    reread = read_index(tmp_path / "gallery.faiss", nprobe=8, refine_factor=16)
    assert faiss.extract_index_ivf(reread).nprobe == 8
    if "Refine" in factory:  # 4-bit codes alone order near neighbours poorly: the 8-bit re-ranking must be on
        assert faiss.downcast_index(reread).k_factor == 16
    truth = search(exact, queries, 1)[1][:, 0]
    recall = float(np.mean(search(reread, queries, 1)[1][:, 0] == truth))
    assert recall >= 0.95


def test_whitening_takes_away_the_common_part_and_survives_a_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    shared = np.abs(rng.normal(size=16)) * 5  # every descriptor carries it, as pooled ReLU features do
    vectors = unit(*(shared + rng.normal(size=(400, 16))))
    learned = Whitening.fit(vectors, dims=8)
    whitened = learned(vectors)
    assert whitened.shape == (400, 8) and np.allclose(np.linalg.norm(whitened, axis=1), 1, atol=1e-5)
    off_diagonal = ~np.eye(400, dtype=bool)
    assert (vectors @ vectors.T)[off_diagonal].mean() > 0.8 and abs((whitened @ whitened.T)[off_diagonal].mean()) < 0.05
    learned.save(tmp_path / "whitening.npz")
    assert np.array_equal(Whitening.load(tmp_path / "whitening.npz")(vectors), whitened)
    Whitening().save(tmp_path / "none.npz")
    assert np.array_equal(Whitening.load(tmp_path / "none.npz")(vectors), vectors)
    with pytest.raises(UserError, match=r"missing.npz: no such file; run the index stage"):
        Whitening.load(tmp_path / "missing.npz")


def test_index_errors_name_the_setting(tmp_path):
    with pytest.raises(UserError, match=r"^params.yaml index.factory: faiss cannot build 'IVF64,Nonsense'"):
        build_index(clustered(10, 5, 8, 0.1, 0), exact_below=1, factory="IVF64,Nonsense")
    with pytest.raises(UserError, match=r"no readable faiss index; run the index stage"):
        read_index(tmp_path / "missing.faiss", nprobe=1, refine_factor=1)


def test_method_names_are_checked():
    assert parse_method("knn+query_penalty+frequency_ban") == ("knn", {"query_penalty", "frequency_ban"})
    with pytest.raises(UserError, match=r"^--method: 'nearest' must start with softmax, knn, blend"):
        parse_method("nearest", "--method")
    with pytest.raises(UserError, match=r"'pool' in 'knn\+pool' is not query_penalty"):
        parse_method("knn+pool", "recognize.methods")
    with pytest.raises(UserError, match=r"the classifier alone has no neighbours"):
        parse_method("softmax+query_penalty", "recognize.methods")


def test_recognition_scores_on_hand_made_predictions():
    # Validation: two dev landmarks and a held-out non-landmark; test: two landmarks (one of a dropped class).
    validation = pd.DataFrame({"id": ["d1", "d2", "h1"], "landmark_id": [5, 6, -1]})
    rows = [
        ("validation", "d1", 5, 0.9),
        ("validation", "h1", 6, 0.8),
        ("validation", "d2", 6, 0.7),
        ("test", "t1", 5, 0.6),
        ("test", "t2", 9, 0.9),
        ("test", "t3", 5, 0.95),
    ]
    predictions = pd.DataFrame(rows, columns=["query_set", "id", "landmark_id", "confidence"]).assign(method="knn")
    solution = pd.DataFrame(
        {"id": ["t1", "t2", "t3"], "landmarks": [[5], [9], []], "Usage": ["Public", "Private", "Private"]}
    )
    def scores(share):
        return recognition_scores(predictions, validation, solution, [5, 6], ["knn"], nonlandmark_share=share)["knn"]

    figures = scores(1 / 3)  # as in the validation set itself: the non-landmark takes one rank, the second
    assert figures["validation_gap"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores(0.5)["validation_gap"] == pytest.approx((1 + 2 / 4) / 2)  # weighted to half: it takes two ranks
    assert figures["dev_gap"] == pytest.approx(1.0)
    assert figures["test_gap"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # t3 (a non-landmark) ranked first
    assert figures["test_gap_landmarks_only"] == pytest.approx(1.0)
    assert figures["test_public"] == pytest.approx(1.0) and figures["test_private"] == pytest.approx(0.5)
    assert (figures["correct"], figures["correct_below_threshold"], figures["test_landmarks"]) == (2, 1, 2)


def test_ranked_votes_give_the_runners_up_with_their_lowered_confidence():
    voters = np.array([[4, 9, 4, -1]])
    weights = np.array([[0.5, 0.9, 0.6, 0.0]])
    lowered = weights - 0.2
    assert ranked_votes(voters, weights, lowered, top_k=5) == [[(4, pytest.approx(0.7)), (9, pytest.approx(0.7))]]
    assert ranked_votes(voters, weights, lowered, top_k=1) == [[(4, pytest.approx(0.7))]]


def test_landmark_names_come_from_the_category_urls(tmp_path):
    names = tmp_path / "train_label_to_category.csv"
    names.write_text("landmark_id,category\n7,http://commons.wikimedia.org/wiki/Category:Eiffel_Tower\n8,Big Ben\n")
    assert landmark_names(names) == {7: "Eiffel Tower", 8: "Big Ben"}
    assert landmark_names(tmp_path / "absent.csv") == {}
