"""Query expansion, database-side augmentation and SuperGlobal's re-ranking, on hand-built vectors whose answers are
known."""

import numpy as np
import pytest

from landmark.errors import UserError
from landmark.recognition import gallery as gallery_module
from landmark.recognition.gallery import PARTS, VALIDATION_PARTS, Queries
from landmark.recognition.graph import NeighbourGraphs, keys
from landmark.recognition.method import Method
from tests.test_recognition import SETTINGS, make_gallery, queries_of, unit


def with_steps(**steps):
    return SETTINGS.model_copy(update={"steps": SETTINGS.steps | steps})


def expanded(name, queries, **steps):
    return Method.parse(name, with_steps(**steps)).rank(queries, top_k=3)


def test_query_expansion_with_alpha_0_searches_with_the_average_of_the_query_and_its_nearest():
    train = unit([1, 0, 0], [0.9, 0.45, 0], [0, 1, 0], [0, 0.2, 1])
    gallery = make_gallery(train, [1, 1, 2, 3], unit([0, 0, 1]))
    query = unit([1, 0.1, 0.05])
    expanded_query = unit(query[0] + train[0] + train[1])[0]  # alpha 0: every neighbour weighs 1, as the query does
    ranking = expanded("knn+aqe", queries_of(gallery, query, 3), aqe={"neighbours": 2, "alpha": 0})
    queries = (
        Method.parse("knn+aqe", with_steps(aqe={"neighbours": 2, "alpha": 0}))
        .steps[0][1]
        .queries(queries_of(gallery, query, 3))
    )
    expected = np.sort(train @ expanded_query)[::-1][:3]
    np.testing.assert_allclose(queries.similarities[0], expected, rtol=1e-6)
    assert ranking.labels[0, 0] == 1
    np.testing.assert_allclose(ranking.confidences[0, 0], expected[:2].sum(), rtol=1e-6)


def test_a_larger_alpha_trusts_the_nearest_neighbour_more():
    train = unit([1, 0, 0], [0, 1, 0])
    gallery = make_gallery(train, [1, 2], unit([0, 0, 1]))
    query = unit([1, 0.8, 0])  # nearer the first, not by much
    step = Method.parse("knn+aqe", with_steps(aqe={"neighbours": 2, "alpha": 0})).steps[0][1]
    flat = step.queries(queries_of(gallery, query, 2))
    sharp = step.model_copy(update={"alpha": 8.0}).queries(queries_of(gallery, query, 2))
    assert flat.similarities[0, 0] - flat.similarities[0, 1] < sharp.similarities[0, 0] - sharp.similarities[0, 1]


def test_database_augmentation_with_one_neighbour_leaves_the_gallery_as_it_was():
    rng = np.random.default_rng(0)
    train = unit(*rng.normal(size=(12, 6)))
    gallery = make_gallery(train, np.arange(12) % 3, unit(*rng.normal(size=(4, 6))))
    augmented = gallery.augmented(("gallery", "dev"), neighbours=1, alpha=3.0)
    np.testing.assert_allclose(augmented.vectors_at(np.arange(12)), train, rtol=0, atol=1e-6)
    queries = queries_of(gallery, unit(*rng.normal(size=(5, 6))), 4)
    step = Method.parse("knn+dba", with_steps(dba={"neighbours": 1, "alpha": 3.0})).steps[0][1]
    again = step.queries(queries)
    np.testing.assert_array_equal(again.positions, queries.positions)
    np.testing.assert_allclose(again.similarities, queries.similarities, rtol=0, atol=1e-6)


def test_database_augmentation_averages_each_image_with_its_nearest_and_never_with_a_dev_image_in_validation():
    train = unit([1, 0, 0], [0.8, 0.6, 0], [0, 0, 1])
    dev = unit([1, 0.05, 0])  # nearer the first train image than its train neighbour is
    gallery = make_gallery(train, [1, 1, 2], unit([0, 1, 1]), dev=dev, dev_labels=[1])
    similarity = float(train[0] @ train[1])  # 0.8
    for parts, neighbour in ((VALIDATION_PARTS, train[1]), (("gallery", "dev"), dev[0])):
        augmented = gallery.augmented(parts, neighbours=2, alpha=1.0)
        weight = similarity if parts == VALIDATION_PARTS else float(train[0] @ dev[0])
        np.testing.assert_allclose(augmented.vectors_at([0])[0], unit(train[0] + weight * neighbour)[0], atol=1e-6)
    assert gallery.augmented(VALIDATION_PARTS, 2, 1.0) is gallery.augmented(VALIDATION_PARTS, 2, 1.0)  # built once


def test_database_augmentation_keeps_each_images_neighbours_and_sums_again_exactly_what_its_index_holds():
    rng = np.random.default_rng(1)
    train, dev = unit(*rng.normal(size=(12, 6))), unit(*rng.normal(size=(3, 6)))
    gallery = make_gallery(train, np.arange(12) % 3, unit(*rng.normal(size=(4, 6))), dev=dev, dev_labels=[0, 1, 2])
    for parts in (VALIDATION_PARTS, ("gallery", "dev")):
        augmented = gallery.augmented(parts, neighbours=3, alpha=3.0)
        held = np.concatenate([index.reconstruct_n(0, index.ntotal) for index in augmented.indexes])
        np.testing.assert_array_equal(augmented.vectors_at(np.arange(15)), held)
        np.testing.assert_array_equal(augmented.vectors_at([[14, -1], [0, 3]])[0, 1], np.zeros(6))
        assert [array.shape for array in augmented.sources] == [(15, 3), (15, 3)]  # not a copy of the vectors
        assert not np.allclose(augmented.vectors_at(np.arange(12)), train)
    np.testing.assert_array_equal(gallery.augmented(VALIDATION_PARTS, 3, 3.0).vectors_at([12, 13, 14]), dev)


def test_database_augmentation_for_the_test_set_reuses_validations_search_of_the_gallery_and_answers_the_same(
    monkeypatch,
):
    rng = np.random.default_rng(2)
    train, dev, pool = unit(*rng.normal(size=(12, 6))), unit(*rng.normal(size=(3, 6))), unit(*rng.normal(size=(4, 6)))
    fresh = make_gallery(train, np.arange(12) % 3, pool, dev=dev, dev_labels=[0, 1, 2]).augmented(PARTS, 2, 3.0)
    gallery = make_gallery(train, np.arange(12) % 3, pool, dev=dev, dev_labels=[0, 1, 2])
    searched, search = [], gallery_module.search
    monkeypatch.setattr(
        gallery_module,
        "search",
        lambda index, vectors, *rest: searched.append((index, len(vectors))) or search(index, vectors, *rest),
    )
    gallery.augmented(VALIDATION_PARTS, 2, 3.0)
    assert searched == [(gallery.indexes[0], 12)]  # the gallery against itself: the search that grows as n²
    shared = gallery.augmented(PARTS, 2, 3.0)
    # what the test set's augmentation adds: the gallery against the dev images, the dev images against both
    assert searched[1:] == [(gallery.indexes[1], 12), (gallery.indexes[0], 3), (gallery.indexes[1], 3)]
    np.testing.assert_array_equal(shared.vectors_at(np.arange(15)), fresh.vectors_at(np.arange(15)))
    np.testing.assert_array_equal(shared.sources[0], fresh.sources[0])


def test_superglobal_lifts_a_match_its_neighbours_confirm_over_a_lone_look_alike():
    # the query's nearest is a lone look-alike; the next three are one landmark, near one another
    train = unit([1, 0.55, 0, 0], [1, 0, 0.6, 0.1], [1, 0, 0.7, 0], [1, 0, 0.65, -0.1], [0, 0, 0, 1])
    gallery = make_gallery(train, [9, 1, 1, 1, 2], unit([0, 1, 0, 0]))
    queries = queries_of(gallery, unit([1, 0.3, 0.3, 0]), 2)
    assert queries.positions[0, 0] == 0
    options = {"shortlist": 5, "refine_neighbours": 2, "beta": 0.5}
    step = Method.parse("knn+superglobal", with_steps(superglobal=options)).steps[0][1]
    reranked = step.queries(queries)
    assert reranked.positions[0, 0] in (1, 2, 3) and 0 not in reranked.positions[0]
    assert (np.diff(reranked.similarities[0]) <= 0).all()
    assert expanded("knn+superglobal", queries, superglobal=options).labels[0, 0] == 1
    assert Method.parse("knn", SETTINGS).rank(queries).labels[0, 0] == 9  # without it, the look-alike's


def test_reranking_steps_need_a_gallery_search():
    with pytest.raises(UserError, match=r"'softmax\+aqe': aqe needs neighbours, which softmax has none of"):
        Method.parse("softmax+aqe", with_steps(aqe={"neighbours": 2, "alpha": 3}))
    with pytest.raises(UserError, match=r"params.yaml recognize.steps.dba.alpha: -1 must be a number >= 0"):
        Method.parse("knn+dba", with_steps(dba={"neighbours": 2, "alpha": -1}))


def test_an_image_s_key_changes_with_its_id_its_vector_and_the_whitening_and_no_other_s_does():
    rng = np.random.default_rng(8)
    vectors, ids = rng.normal(size=(6, 2048)).astype(np.float32), [f"g{row}" for row in range(6)]
    first = keys(ids, vectors, salt=0)
    assert len(set(first.tolist())) == 6 and np.array_equal(keys(ids, vectors.copy(), salt=0), first)
    nudged = vectors.copy()
    nudged[2, 1000] = np.nextafter(nudged[2, 1000], np.float32(np.inf))  # one bit of one value
    renamed = [*ids[:3], "g9", *ids[4:]]
    assert (keys(ids, nudged, salt=0) != first).tolist() == [False, False, True, False, False, False]
    assert (keys(renamed, vectors, salt=0) != first).tolist() == [False, False, False, True, False, False]
    assert (keys(ids, vectors, salt=12345) != first).all()  # another whitening: every vector searched anew


def test_dbas_neighbours_kept_from_the_last_run_are_a_fresh_search_and_only_what_changed_is_searched(
    tmp_path, monkeypatch
):
    """Photos added to the gallery and removed from it, and one image whose vector changed: the next run searches
    the new and changed images and those that lost a neighbour, keeps the rest, and augments the gallery exactly as
    a run that kept nothing does. landmark predict reads the graphs and writes nothing."""
    rng = np.random.default_rng(3)
    train, dev, pool = unit(*rng.normal(size=(300, 8))), unit(*rng.normal(size=(20, 8))), unit(*rng.normal(size=(4, 8)))
    labels = np.arange(300) % 7
    before = make_gallery(train, labels, pool, dev=dev, dev_labels=np.arange(20) % 7)
    before.graphs = NeighbourGraphs(tmp_path, writable=True)
    before.augmented(PARTS, 3, 3.0)
    gallery_near = before.nearest_within("gallery", "gallery", 3)[1]
    dev_near = before.nearest_within("dev", "gallery", 3)[1]
    before.graphs.save()

    removed, changed = [5, 40], 77
    kept = np.setdiff1d(np.arange(300), removed)
    moved = train.copy()
    moved[changed] = unit(rng.normal(size=8))[0]
    after_train = np.concatenate([moved[kept], unit(*rng.normal(size=(4, 8)))])
    after_labels = np.concatenate([labels[kept], [9, 9, 9, 9]])
    ids = [f"g{row}" for row in kept] + [f"new{row}" for row in range(4)]

    def gallery_after(graphs):
        gallery = make_gallery(after_train, after_labels, pool, dev=dev, dev_labels=np.arange(20) % 7)
        gallery.ids[: len(ids)] = ids
        gallery.graphs = graphs
        return gallery

    searched, search = [], gallery_module.search
    monkeypatch.setattr(
        gallery_module,
        "search",
        lambda index, vectors, *rest: searched.append(len(vectors)) or search(index, vectors, *rest),
    )
    after = gallery_after(NeighbourGraphs(tmp_path, writable=True))
    augmented = after.augmented(PARTS, 3, 3.0)
    gone = [*removed, changed]
    lost = np.isin(gallery_near, gone).any(axis=1)
    lost[gone] = False  # gone, or counted as changed
    dev_lost = int(np.isin(dev_near, gone).any(axis=1).sum())
    # searched against the gallery: the new, the changed and those that lost a neighbour; against the dev images:
    # the new and the changed; the dev images against the gallery: those that lost a neighbour; against dev: none
    assert searched == [4 + 1 + int(lost.sum()), 4 + 1, dev_lost] and 0 < lost.sum() and 0 < dev_lost
    assert after.graphs.summary() == (
        f"DBA's neighbours: {sum(searched)} images searched, {2 * 302 + 2 * 20 - sum(searched)} kept from the last run"
    )
    fresh = gallery_after(NeighbourGraphs()).augmented(PARTS, 3, 3.0)
    np.testing.assert_array_equal(augmented.sources[0], fresh.sources[0])
    np.testing.assert_allclose(augmented.sources[1], fresh.sources[1], rtol=1e-6)
    after.graphs.save()

    searched.clear()
    written = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    reader = gallery_after(NeighbourGraphs(tmp_path))  # landmark predict's
    np.testing.assert_array_equal(reader.augmented(PARTS, 3, 3.0).sources[0], fresh.sources[0])
    reader.graphs.save()
    assert searched == [] and {path.name: path.read_bytes() for path in tmp_path.iterdir()} == written

    # a kept graph whose keys name an image twice (a 64-bit collision) is not reused: searched afresh, no error
    for path in tmp_path.glob("gallery-gallery-*.npz"):
        with np.load(path) as graph:
            arrays = {key: graph[key] for key in graph.files}
        arrays["rows"][1] = arrays["rows"][0]
        np.savez(path, **arrays)
    collided = gallery_after(NeighbourGraphs(tmp_path, writable=True))
    np.testing.assert_array_equal(collided.augmented(PARTS, 3, 3.0).sources[0], fresh.sources[0])
    assert searched[0] == 302  # every gallery image, against the gallery


def test_the_first_search_finds_what_query_expansion_and_superglobal_ask_of_the_query_and_answers_the_same(
    monkeypatch,
):
    rng = np.random.default_rng(5)
    gallery = make_gallery(unit(*rng.normal(size=(60, 6))), np.arange(60) % 4, unit(*rng.normal(size=(4, 6))))
    vectors, classifier = unit(*rng.normal(size=(8, 6))), (np.full(8, -1), np.zeros(8))
    settings = with_steps(aqe={"neighbours": 3, "alpha": 3.0}, superglobal={"shortlist": 12, "refine_neighbours": 2,
                                                                            "beta": 0.15})  # fmt: skip
    searched, search = [], gallery_module.search
    monkeypatch.setattr(
        gallery_module,
        "search",
        lambda index, found, k, *rest: searched.append(k) or search(index, found, k, *rest),
    )
    for name, widest in (("knn+aqe", 3), ("knn+superglobal", 12)):
        method = Method.parse(name, settings)
        assert method.widest(voters=4) == widest
        alone = method.rank(Queries.find(gallery, vectors, classifier, 4), top_k=3)
        searched.clear()
        shared = method.rank(Queries.find(gallery, vectors, classifier, 4, widest=widest), top_k=3)
        # one search of the queries themselves, in each of the two parts (αQE's expanded queries search again)
        assert searched == [max(4, widest)] * 2 + ([4] * 2 if name == "knn+aqe" else [])
        np.testing.assert_array_equal(shared.labels, alone.labels)
        np.testing.assert_allclose(shared.confidences, alone.confidences, rtol=1e-6)
