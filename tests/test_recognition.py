"""Recognition: the count, the steps, the gallery's two parts, the faiss indexes and the checks that no step runs
without its data, on hand-built vectors whose answers are known."""

import copy
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import faiss
import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import PlainValidator

from landmark.errors import UserError
from landmark.predict import landmark_names
from landmark.recognition import steps as steps_module
from landmark.recognition.gallery import PARTS, VALIDATION_PARTS, Gallery, Queries
from landmark.recognition.method import Ballot, Method, check_methods, count
from landmark.recognition.scoring import dev_weighting_note, recognition_scores, validation_weights
from landmark.recognition.search import (
    Whitening,
    build_index,
    exact_index,
    normalized,
    read_index,
    search,
    write_index,
)
from landmark.recognition.steps import Step
from landmark.settings import nonlandmark_shortfalls, parse_params, whole

PARAMS = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
INDEXING = parse_params(PARAMS).index
WHITENING = {"shrinkage": INDEXING.whitening_shrinkage, "sample": INDEXING.whitening_sample, "seed": INDEXING.seed}
SETTINGS = parse_params(PARAMS).recognize.model_copy(
    update={
        "steps": {
            "query_penalty": {"pool_neighbours": 1},
            "train_correction": {"pool_neighbours": 1},
            "frequency_ban": {"max_label_predictions": 10},
        }
    }
)


def unit(*rows):
    vectors = np.asarray(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_gallery(train, train_labels, pool, dev=None, dev_labels=()):
    """A Gallery of hand-built (already whitened) vectors: exact indexes, no whitening."""
    dev = np.zeros((0, train.shape[1]), np.float32) if dev is None else dev
    train_labels, dev_labels = np.asarray(train_labels), np.asarray(dev_labels, dtype=np.int64)

    def part(vectors, labels, prefix):
        rows = pd.DataFrame({"id": [f"{prefix}{index}" for index in range(len(labels))], "landmark_id": labels})
        return exact_index(vectors), rows, vectors

    parts = {"gallery": part(train, train_labels, "g"), "dev": part(dev, dev_labels, "d")}
    return Gallery(Whitening(), parts, exact_index(pool))


def queries_of(gallery, vectors, k, parts=PARTS, classifier=None):
    classifier = classifier or (np.full(len(vectors), -1), np.zeros(len(vectors)))
    return Queries.find(gallery, vectors, classifier, k, parts)


def rank(name, queries, top_k=1, settings=SETTINGS):
    ranking = Method.parse(name, settings).rank(queries, top_k)
    return (ranking.labels[:, 0], ranking.confidences[:, 0]) if top_k == 1 else ranking


def test_the_count_sums_the_weights_of_each_landmark():
    labels = np.array([[1, 2, 1], [3, -1, 3], [5, 6, 7], [-1, -1, -1]])
    weights = np.array([[0.9, 0.8, 0.5], [0.2, 0.9, 0.3], [0.4, 0.4, 0.4], [0.0, 0.0, 0.0]])
    ranking = count(Ballot(labels, weights, weights.copy(), np.zeros_like(labels)))
    assert ranking.labels[:, 0].tolist() == [1, 3, 5, -1]  # 1.4 beats 0.8; -1 does not vote; a tie: the nearer
    assert ranking.confidences[:3, 0] == pytest.approx([1.4, 0.5, 0.4]) and ranking.confidences[3, 0] == -np.inf


def test_the_count_ranks_the_runners_up_by_weight_each_with_its_credits():
    labels = np.array([[4, 9, 4, -1]])
    weights = np.array([[0.5, 0.9, 0.6, 0.0]])
    ranking = count(Ballot(labels, weights, weights - 0.2, np.zeros_like(labels)), top_k=5)
    assert ranking.labels.tolist() == [[4, 9, -1, -1, -1]]
    assert ranking.confidences[0, :2] == pytest.approx([0.7, 0.7]) and (ranking.confidences[0, 2:] == -np.inf).all()


def test_knn_on_a_faiss_index_gives_the_voted_label_and_its_summed_similarity():
    train = unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.8, 0, 0.2])
    query = unit([1, 0.05, 0])
    found = queries_of(make_gallery(train, [10, 10, 20, 30], unit([0, 0, 1])), query, k=3)
    label, confidence = rank("knn", found)
    expected = float((train[:2] @ query[0]).sum())  # the two images of 10; 30's one vote is less
    assert label.tolist() == [10] and confidence[0] == pytest.approx(expected, abs=1e-6)


def test_validation_never_finds_a_dev_image_but_the_test_set_does():
    train, dev = unit([1, 0, 0], [0, 1, 0]), unit([0, 0, 1], [0.1, 0, 1])
    gallery = make_gallery(train, [1, 2], unit([1, 1, 1]), dev, [3, 3])
    query = unit([0.05, 0, 1])  # a dev image's twin: of landmark 3, which only the dev images show
    validation = queries_of(gallery, query, k=3, parts=VALIDATION_PARTS)
    assert set(validation.positions[0]) <= {0, 1, -1} and rank("knn", validation)[0][0] != 3
    test = queries_of(gallery, query, k=3)
    assert sorted(test.positions[0, :2]) == [2, 3] and set(gallery.ids[test.positions[0, :2]]) == {"d0", "d1"}
    assert rank("knn", test)[0].tolist() == [3]


def ranks_landmark_first(labels, confidences, landmark, non_landmark):
    return labels[landmark] >= 0 and (labels[non_landmark] < 0 or confidences[landmark] > confidences[non_landmark])


def test_query_penalty_moves_a_query_that_resembles_the_pool_below_a_landmark():
    # A "hub" class H near e2 collects a non-landmark query that also lies next to the pool's photos.
    train = unit([1, 0, 0, 0], [1, 0.1, 0, 0], [0, 1, 0, 0], [0, 1, 0.05, 0])
    queries = unit([1, 0.6, 0, 0], [0, 1, 0.02, 0])  # the landmark (less alike its class), the non-landmark
    found = queries_of(make_gallery(train, [1, 1, 2, 2], unit([0, 1, 0.01, 0])), queries, k=2)
    assert not ranks_landmark_first(*rank("knn", found), 0, 1)
    penalised = rank("knn+query_penalty", found)
    assert ranks_landmark_first(*penalised, 0, 1)
    assert penalised[0].tolist() == rank("knn", found)[0].tolist()  # the answer stays; only its confidence falls


def test_train_correction_moves_a_query_voted_by_clutter_like_train_images_below_a_landmark():
    # H's train images look like the pool (e3); the non-landmark query does not itself, so only the train side sees it.
    train = unit([1, 0, 0, 0], [1, 0, 0, 0.4], [0, 1, 1, 0], [0, 1, 1, 0.1])
    queries = unit([1, 0, 0, 3], [0, 1, 0, 0])
    found = queries_of(make_gallery(train, [1, 1, 2, 2], unit([0, 0, 1, 0])), queries, k=2)
    assert found.pool_similarity(1)[1] < 0.01  # the query itself is far from the pool
    assert not ranks_landmark_first(*rank("knn", found), 0, 1)
    assert ranks_landmark_first(*rank("knn+train_correction", found), 0, 1)


def test_frequency_ban_moves_a_label_predicted_too_often_below_the_rest_keeping_its_order():
    train = unit([1, 0, 0], [0, 1, 0])
    queries = unit([1, 0.1, 0], [1, 0.2, 0], [1, 0.3, 0], [0.1, 1, 0], [1, 0.05, 0])
    found = queries_of(make_gallery(train, [7, 3], unit([0, 0, 1])), queries, k=1)
    labels, plain = rank("knn", found)
    ban = SETTINGS.model_copy(update={"steps": {"frequency_ban": {"max_label_predictions": 3}}})
    banned = rank("knn+frequency_ban", found, settings=ban)[1]
    assert labels.tolist() == [7, 7, 7, 3, 7] and banned[3] == plain[3] and (banned[[0, 1, 2, 4]] < plain[3]).all()
    assert np.argsort(-banned[[0, 1, 2, 4]]).tolist() == np.argsort(-plain[[0, 1, 2, 4]]).tolist()
    loose = SETTINGS.model_copy(update={"steps": {"frequency_ban": {"max_label_predictions": 4}}})
    assert rank("knn+frequency_ban", found, settings=loose)[1].tolist() == plain.tolist()
    found.stands_for = np.full(5, 0.5)  # queries that stand for half a test query each: 2 of the test set's
    assert rank("knn+frequency_ban", found, settings=ban)[1].tolist() == plain.tolist()


def test_blend_lets_the_classifier_vote_with_its_probability():
    train = unit([1, 0, 0], [0, 1, 0])
    query = unit([1, 0.9, 0])
    found = queries_of(make_gallery(train, [1, 2], unit([0, 0, 1])), query, k=2, classifier=([2], [0.9]))
    assert rank("knn", found)[0].tolist() == [1]
    label, confidence = rank("blend", found)
    assert label.tolist() == [2] and confidence[0] == pytest.approx(found.similarities[0, 1] + 0.9, abs=1e-6)
    assert rank("softmax", found)[0].tolist() == [2] and rank("softmax", found)[1] == pytest.approx([0.9])


class Amplify(Step):
    """A toy step: every vote for `landmark` weighs `factor` times as much."""

    landmark: Annotated[int, PlainValidator(whole(0))]
    factor: Annotated[int, PlainValidator(whole(1))]

    def ballot(self, ballot, queries):
        boost = np.where(ballot.labels == self.landmark, self.factor, 1)
        return replace(ballot, weights=ballot.weights * boost, credits=ballot.credits * boost)


def test_a_registered_step_changes_the_votes_as_it_says(monkeypatch):
    monkeypatch.setitem(steps_module.STEPS, "amplify", Amplify)
    train = unit([1, 0, 0], [0.9, 0.2, 0], [0.7, 0.7, 0])
    query = unit([1, 0.1, 0])
    found = queries_of(make_gallery(train, [1, 1, 2], unit([0, 0, 1])), query, k=3)
    settings = SETTINGS.model_copy(update={"steps": {"amplify": {"landmark": 2, "factor": 3}}})
    plain, amplified = rank("knn", found, top_k=2), rank("knn+amplify", found, top_k=2, settings=settings)
    assert plain.labels.tolist() == [[1, 2]] and amplified.labels.tolist() == [[2, 1]]  # 3 × 0.78 beats 0.99 + 0.94
    assert amplified.confidences[0] == pytest.approx([3 * plain.confidences[0, 1], plain.confidences[0, 0]])
    with pytest.raises(UserError, match=r"^params.yaml recognize.steps.amplify.factor: 0 must be a whole number"):
        Method.parse("knn+amplify", SETTINGS.model_copy(update={"steps": {"amplify": {"landmark": 2, "factor": 0}}}))


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
    exact = build_index(gallery, INDEXING.model_copy(update={"exact_below": 10**6, "factory": factory}))
    approximate = build_index(gallery, INDEXING.model_copy(update={"exact_below": 1000, "factory": factory}))
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
    learned = Whitening.fit(vectors, dims=8, **WHITENING)
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


def test_whitening_reads_a_chunk_at_a_time_and_equals_the_pca_of_its_sample(tmp_path):
    """Learned from a d × d covariance and applied in chunks to a memory-mapped set larger than one chunk, it is
    the PCA whitening an SVD of the whole sample gives (axes up to their sign, which no similarity sees)."""
    rng = np.random.default_rng(1)
    vectors = unit(*(rng.normal(size=(70_000, 12)) * np.linspace(3, 0.5, 12)))
    np.save(tmp_path / "gallery.npy", vectors)
    mapped = np.load(tmp_path / "gallery.npy", mmap_mode="r")
    learned = Whitening.fit(mapped, dims=6, **WHITENING | {"sample": 20_000})
    rows = np.sort(np.random.default_rng(0).permutation(len(vectors))[:20_000])
    sample = vectors[rows].astype(np.float64)
    _, singular, axes = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    variance = singular**2 / len(sample)
    reference = axes[:6].T / np.sqrt(variance[:6] + 0.1 * variance.mean())
    assert np.allclose(np.abs(learned.projection), np.abs(reference), rtol=1e-4, atol=1e-6)
    whitened = learned(mapped)
    assert whitened.shape == (70_000, 6) and np.allclose(whitened[-5:], learned(vectors[-5:]), atol=1e-6)
    similarities = whitened[:50] @ whitened[:50].T
    expected = normalized((vectors[:50] - learned.mean) @ reference)
    assert np.allclose(similarities, expected @ expected.T, atol=1e-4)


def test_index_errors_name_the_setting(tmp_path):
    with pytest.raises(UserError, match=r"^params.yaml index.factory: faiss cannot build 'IVF64,Nonsense'"):
        build_index(
            clustered(10, 5, 8, 0.1, 0), INDEXING.model_copy(update={"exact_below": 1, "factory": "IVF64,Nonsense"})
        )
    with pytest.raises(UserError, match=r"no readable faiss index; run the index stage"):
        read_index(tmp_path / "missing.faiss", nprobe=1, refine_factor=1)


def test_method_names_are_parsed_once_into_a_base_and_ordered_steps():
    method = Method.parse("knn+frequency_ban+query_penalty", SETTINGS)
    assert method.base == "knn" and [name for name, _ in method.steps] == ["frequency_ban", "query_penalty"]
    assert method.steps[1][1].pool_neighbours == 1 and method.refuses_non_landmarks
    assert not Method.parse("knn+frequency_ban", SETTINGS).refuses_non_landmarks
    with pytest.raises(UserError, match=r"^--method: 'nearest' must start with softmax, knn, blend$"):
        Method.parse("nearest", SETTINGS, "--method")
    with pytest.raises(UserError, match=r"'pool' in 'knn\+pool' is not query_penalty, train_correction, freq"):
        Method.parse("knn+pool", SETTINGS)
    with pytest.raises(UserError, match=r"'softmax\+query_penalty': query_penalty needs neighbours, which softmax "
                       r"has none of; start it with knn or blend$"):  # fmt: skip
        Method.parse("softmax+query_penalty", SETTINGS)
    with pytest.raises(UserError, match=r"^params.yaml recognize.steps.query_penalty.pool_neighbours: missing$"):
        Method.parse("knn+query_penalty", SETTINGS.model_copy(update={"steps": {}}))
    with pytest.raises(UserError, match=r"^params.yaml recognize.steps.re_rank: no such step; choose from"):
        Method.parse("knn", SETTINGS.model_copy(update={"steps": {"re_rank": {}}}))


def parsed(edit):
    params = copy.deepcopy(PARAMS)
    edit(params)
    return parse_params(params)


def check(settings):
    return check_methods(settings, nonlandmark_shortfalls(settings.data, settings.split))


def test_every_step_s_options_are_checked_whether_or_not_a_method_names_it():
    assert "verify" not in "".join(PARAMS["recognize"]["methods"])  # the default names no method that verifies
    with pytest.raises(
        UserError, match=r"^params.yaml recognize.steps.verify.ratio: 1.5 must be a number from 0 to 1$"
    ):
        check(parsed(lambda params: params["recognize"]["steps"]["verify"].update(ratio=1.5)))


def test_no_step_runs_without_the_pool_it_needs(tmp_path):
    assert len(check(parse_params(PARAMS))) == len(PARAMS["recognize"]["methods"])  # the synthetic set's own pool
    local = {"source": "local", "local": {"path": str(tmp_path)}, "nonlandmarks": ""}
    no_pool = parsed(lambda params: params["data"].update(local))
    with pytest.raises(UserError) as raised:
        check(no_pool)
    assert str(raised.value) == (
        "params.yaml data.nonlandmarks: no non-landmark pool is given, which knn+query_penalty in "
        "recognize.methods needs for query_penalty; point data.nonlandmarks at a folder of photos without "
        "landmarks, or take query_penalty out of recognize.methods"
    )
    plain = ["softmax", "knn", "knn+frequency_ban"]
    with pytest.raises(UserError, match=r"^params.yaml data.nonlandmarks: no non-landmark pool is given, which "
                       r"submission.method: best needs .*; point data.nonlandmarks at a folder of photos without "
                       r"landmarks, or name the method in submission.method$"):  # fmt: skip
        check(parsed(lambda params: (params["data"].update(local), params["recognize"].update(methods=plain))))
    named = parsed(lambda params: (params["data"].update(local), params["recognize"].update(methods=plain),
                                   params["submission"].update(method="knn")))  # fmt: skip
    assert [method.name for method in check(named)] == plain
    (tmp_path / "nonlandmark.csv").write_text("id\n")  # a local folder may bring its own pool
    assert len(check(no_pool)) == len(PARAMS["recognize"]["methods"])
    with pytest.raises(UserError, match=r"^params.yaml data.nonlandmarks: no non-landmark pool \(data.synthetic."
                       r"num_nonlandmark_images is 0\), which knn\+query_penalty"):  # fmt: skip
        check(parsed(lambda params: params["data"]["synthetic"].update(num_nonlandmark_images=0)))
    with pytest.raises(UserError, match=r"^params.yaml split.holdout_fraction: 1.0 holds out every photo of the "
                       r"non-landmark pool, leaving none to search, which knn\+query_penalty .*; lower"):  # fmt: skip
        check(parsed(lambda params: params["split"].update(holdout_fraction=1.0)))
    with pytest.raises(UserError, match=r"^params.yaml split.holdout_fraction: 0.0 holds out no photo .* which "
                       r"submission.method: best needs"):  # fmt: skip
        check(parsed(lambda params: params["split"].update(holdout_fraction=0.0)))


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

    def scores(share, dev_weighting="images"):
        weights = validation_weights(validation["landmark_id"], share, dev_weighting)
        return recognition_scores(predictions, (validation, weights), solution, ([5, 6], [5, 6, 9]), ["knn"])["knn"]

    figures = scores(1 / 3)  # as in the validation set itself: the non-landmark takes one rank, the second
    assert figures["validation_gap"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores(0.5)["validation_gap"] == pytest.approx((1 + 2 / 4) / 2)  # weighted to half: it takes two ranks
    assert figures["dev_gap"] == pytest.approx(1.0)
    assert figures["test_gap"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # t3 (a non-landmark) ranked first
    assert figures["test_gap_landmarks_only"] == pytest.approx(1.0)
    assert figures["test_public"] == pytest.approx(1.0) and figures["test_private"] == pytest.approx(0.5)
    assert (figures["correct"], figures["correct_below_threshold"], figures["test_landmarks"]) == (2, 1, 2)
    assert figures["correct_unlearned"] == 0  # the classifier learned 9 too (a recipe learns the tail)
    learned_five = recognition_scores(predictions, (validation, validation_weights(validation["landmark_id"], 0.5,
                                      "images")), solution, ([5, 6], [5]), ["knn"])["knn"]  # fmt: skip
    assert learned_five["correct_unlearned"] == 1  # t2, of class 9: only the gallery knows it


def test_dev_weighting_by_classes_counts_each_class_once():
    # Class 5 has two dev queries (one right, one wrong), class 6 one (right), and one held-out non-landmark.
    validation = pd.DataFrame({"id": ["d1", "d2", "d3", "h1"], "landmark_id": [5, 5, 6, -1]})
    rows = [("d1", 5, 0.9), ("d2", 7, 0.8), ("d3", 6, 0.7), ("h1", 6, 0.6)]
    predictions = pd.DataFrame(rows, columns=["id", "landmark_id", "confidence"]).assign(
        query_set="validation", method="knn"
    )

    def validation_gap(dev_weighting):
        weights = validation_weights(validation["landmark_id"], 0.25, dev_weighting)
        return recognition_scores(predictions, (validation, weights), None, ([5, 6], [5]), ["knn"])["knn"][
            "validation_gap"
        ]

    assert validation_weights(validation["landmark_id"], 0.25, "images").tolist() == [1, 1, 1, 1]
    assert validation_gap("images") == pytest.approx((1 + 2 / 3) / 3)
    # classes: d1 and d2 count 1/2 each, d3 1; the non-landmark a quarter of the whole, 2/3
    assert validation_weights(validation["landmark_id"], 0.25, "classes") == pytest.approx([0.5, 0.5, 1, 2 / 3])
    assert validation_gap("classes") == pytest.approx((0.5 * 1 + 1 * (1.5 / 2)) / 2)
    # where every dev class has one dev image, classes weighs as images: said in one line, not left to look alike
    assert dev_weighting_note([5, 5, 6], "classes") is None and dev_weighting_note([5, 6], "images") is None
    assert dev_weighting_note([5, 6], "classes").startswith("recognize.dev_weighting: classes changes nothing here")


def test_landmark_names_come_from_the_category_urls(tmp_path):
    names = tmp_path / "train_label_to_category.csv"
    names.write_text("landmark_id,category\n7,http://commons.wikimedia.org/wiki/Category:Eiffel_Tower\n8,Big Ben\n")
    assert landmark_names(names) == {7: "Eiffel Tower", 8: "Big Ben"}
    assert landmark_names(tmp_path / "absent.csv") == {}


def write_embeddings(folder, name, ids, labels, vectors, classifier=None):
    classifier = classifier or ([-1] * len(ids), [0.0] * len(ids))
    frame = pd.DataFrame({"id": ids, "landmark_id": labels, "classifier_landmark": classifier[0],
                          "classifier_confidence": classifier[1]})  # fmt: skip
    frame.to_csv(folder / f"{name}.csv", index=False)
    np.save(folder / f"{name}.npy", np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))


def test_a_tail_class_dev_query_is_asked_and_only_retrieval_answers_it(tmp_path, monkeypatch):
    """The index and recognize stages on hand-made embeddings: the filter kept 10 and 20; 30, a class below it, gave
    its second image to the dev set. Retrieval names it from its first; the classifier, which never learned 30,
    cannot."""
    axes = np.eye(6, dtype=np.float32)
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    write_embeddings(embeddings, "gallery", ["a", "b", "c"], [10, 20, 30], unit(axes[0], axes[1], axes[2] + 0.1))
    dev_classifier = ([10, 20, 10], [0.8, 0.8, 0.9])  # the tail image taken for a 10, with confidence
    dev = unit(axes[0] + 0.1, axes[1] + 0.1, axes[2] + 0.2 * axes[3])
    write_embeddings(embeddings, "dev", ["d10", "d20", "d30"], [10, 20, 30], dev, dev_classifier)
    write_embeddings(embeddings, "holdout", ["h"], [-1], unit(axes[5]), ([10], [0.5]))
    write_embeddings(embeddings, "pool", ["p"], [-1], unit(axes[5] + 0.1 * axes[4]))
    write_embeddings(embeddings, "test", ["t"], [-1], unit(axes[2] + 0.2 * axes[3]), ([10], [0.9]))
    pd.DataFrame({"landmark_id": [10, 20], "images": [1, 1]}).to_csv(embeddings / "classes.csv", index=False)
    pd.DataFrame({"landmark_id": [10, 20]}).to_csv(tmp_path / "classes.csv", index=False)
    params = copy.deepcopy(PARAMS)
    params["index"]["whitening"] = "none"
    params["recognize"]["neighbours"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "images").mkdir()
    (tmp_path / "photos/train").mkdir(parents=True)
    (tmp_path / "photos/train/index.csv").write_text("id\nc\n")  # c came from data.gallery_photos
    monkeypatch.chdir(tmp_path)
    from stages import index, recognize

    index.main("embeddings", "indexes", "photos")
    recognize.main(
        "embeddings", "indexes", "images", "photos", "classes.csv", "local_features", "graphs", "recognitions"
    )
    predictions = pd.read_csv(tmp_path / "recognitions/predictions.csv", dtype={"id": str})
    answer = predictions.set_index(["query_set", "method", "id"])["landmark_id"]
    assert answer["validation", "knn", "d30"] == 30 and answer["validation", "softmax", "d30"] == 10
    # validation searched the gallery without the dev images; the test set searched them too
    shown = pd.read_csv(tmp_path / "recognitions/neighbours.csv", dtype={"query_id": str, "neighbour_id": str})
    assert not shown.loc[shown["query_set"] == "validation", "neighbour_id"].str.startswith("d").any()
    assert shown.loc[shown["query_set"] == "test", "neighbour_id"].tolist()[:1] == ["d30"]
    metrics = yaml.safe_load((tmp_path / "recognitions/metrics.json").read_text())
    assert metrics["gallery"] == {"images": 6, "validation_images": 3, "classes": 3, "filter_classes": 2,
                                  "classifier_classes": 2, "unlearned_classes": 1, "gallery_photos": 1,
                                  "gallery_photo_only_classes": 0}  # fmt: skip  # d30, a train image, shows 30 too
    assert metrics["methods"]["knn"]["dev_gap"] == pytest.approx(1.0) and metrics["methods"]["softmax"]["dev_gap"] < 1


def test_the_index_stage_learns_its_whitening_on_the_train_images_so_gallery_photos_move_no_vector(
    tmp_path, monkeypatch
):
    """index.whitening pca is learned on the gallery's train images, not on data.gallery_photos' photos: adding
    photos leaves the whitening, and every other image's vector, as they were (what DBA's kept neighbours need)."""
    rng = np.random.default_rng(4)
    train = unit(*(rng.normal(size=(40, 12)) * np.linspace(3, 0.5, 12)))
    photos = unit(*(rng.normal(size=(30, 12)) + 5 * np.eye(12)[0]))  # far from the train images' mean
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    for name in ("dev", "pool"):
        write_embeddings(embeddings, name, [f"{name}0"], [-1], unit(rng.normal(size=12)))
    params = copy.deepcopy(PARAMS)
    params["index"]["whitening_dims"] = 6
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "photos/train").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    from stages import index

    learned = {}
    for added in (0, 30):
        ids = [f"t{row}" for row in range(40)] + [f"p{row}" for row in range(added)]
        write_embeddings(embeddings, "gallery", ids, [1] * len(ids), np.concatenate([train, photos[:added]]))
        (tmp_path / "photos/train/index.csv").write_text("id\n" + "".join(f"p{row}\n" for row in range(added)))
        index.main("embeddings", f"indexes{added}", "photos")
        learned[added] = Whitening.load(tmp_path / f"indexes{added}/whitening.npz")
    np.testing.assert_array_equal(learned[30].projection, learned[0].projection)
    np.testing.assert_array_equal(learned[30].mean, Whitening.fit(train, dims=6, **WHITENING).mean)
    index.main("embeddings", "unwhitened", "--unwhitened")
    assert Whitening.load(tmp_path / "unwhitened/whitening.npz").projection is None
