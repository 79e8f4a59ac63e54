"""Spatial verification on real photos (scikit-learn's samples): SIFT features, MAGSAC++ inliers, the feature sets
the local_features stage keeps, and the verify step's bonus on the votes the photos confirm."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from landmark.data.layout import image_path
from landmark.errors import UserError
from landmark.predict import Recognizer
from landmark.recognition.method import Method, check_reach
from landmark.recognition.steps import most_confident
from landmark.recognition.verification import FeatureCache, FeatureSet, Photos, extract, inliers
from landmark.report import plot_answers
from landmark.settings import parse_params
from tests.test_recognition import PARAMS, SETTINGS, make_gallery, queries_of, unit

VERIFY = {"share": 1.0, "neighbours": 2, "floor": 30, "cap": 100, "ratio": 0.8, "max_error": 4.0}


def jpeg(rgb) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture(scope="module")
def photos():
    """china.jpg, the same scene seen from elsewhere (a perspective warp), and an unrelated photo, as JPEG bytes."""
    china, flower = load_sample_image("china.jpg"), load_sample_image("flower.jpg")
    height, width = china.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = np.float32([[30, 20], [width - 10, 40], [width - 40, height - 10], [10, height - 30]])
    warped = cv2.warpPerspective(china, cv2.getPerspectiveTransform(corners, moved), (width, height))
    return {"china": jpeg(china), "warped": jpeg(warped), "flower": jpeg(flower)}


@pytest.fixture(scope="module")
def features(photos):
    return {name: extract(blob, max_side=512, max_features=1000) for name, blob in photos.items()}


def test_a_photo_and_its_warped_copy_pass_the_floor_and_unrelated_photos_stay_below_it(features):
    floor = PARAMS["recognize"]["steps"]["verify"]["floor"]
    assert inliers(features["china"], features["warped"], 0.8, 4.0) >= 3 * floor
    assert inliers(features["china"], features["flower"], 0.8, 4.0) < floor
    assert inliers(features["warped"], features["flower"], 0.8, 4.0) < floor


def test_features_come_from_the_photo_with_its_long_side_capped(photos, features):
    points, descriptors = features["china"]
    assert len(points) == len(descriptors) == 1000 and descriptors.dtype == np.uint8
    assert points[:, 0].max() < 512 and points[:, 1].max() < 512 * 427 / 640  # china.jpg is 640 × 427
    small_points, _ = extract(photos["china"], max_side=128, max_features=1000)
    assert small_points[:, 0].max() < 128 and len(small_points) < 1000


def test_a_feature_set_keeps_each_photo_and_marks_an_unreadable_one(tmp_path, features):
    kept = FeatureSet.of(["a", "b", "c"], [features["china"], extract(b"not a photo", 512, 10), features["flower"]])
    kept.save(tmp_path, "train")
    loaded = FeatureSet.load(tmp_path, "train")
    assert loaded[1] is None and list(loaded.rows_of(["c", "x", "a"])) == [2, -1, 0]
    for row, name in ((0, "china"), (2, "flower")):
        np.testing.assert_array_equal(loaded[row][0], features[name][0])
        np.testing.assert_array_equal(loaded[row][1], features[name][1])
    assert len(FeatureSet.of([], []).joined(kept).starts) == 3 and FeatureSet.of([], []).joined(kept)[2] is not None
    kept.save(tmp_path / "again", "train")  # the same features, the same bytes: DVC sees no change
    for saved in tmp_path.glob("train.*.npy"):
        assert saved.read_bytes() == (tmp_path / "again" / saved.name).read_bytes()


def kaggle_folder(root, photos) -> Path:
    """The Kaggle layout (split/a/b/c/id.jpg) of china.jpg and flower.jpg in train, the warped china in test, and
    two files OpenCV cannot read."""
    for split, name, blob in (
        ("train", "china0", photos["china"]),
        ("train", "flower0", photos["flower"]),
        ("train", "gif000", b"GIF89a: not a photo OpenCV reads"),
        ("train", "empty0", b""),
        ("test", "query0", photos["warped"]),
    ):
        path = image_path(root, split, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return root


def test_the_cache_extracts_each_photo_once_keeps_it_across_runs_and_counts_the_unreadable(tmp_path, photos):
    images = kaggle_folder(tmp_path / "images", photos)
    cache = FeatureCache(tmp_path / "cache", images, max_side=512, max_features=1000, processes=2)
    cache.ensure("train", ["china0", "gif000", "empty0", "china0"])
    assert (
        cache.extracted == 3 and cache.features("train", "gif000") is None and cache.features("train", "empty0") is None
    )
    assert len(cache.features("train", "china0")[0]) == 1000
    cache.ensure("train", ["china0", "flower0"])
    assert cache.extracted == 4  # china0 was known
    cache.save()
    again = FeatureCache(tmp_path / "cache", images, max_side=512, max_features=1000)
    again.ensure("train", ["china0", "flower0", "gif000"])
    assert again.extracted == 0  # the next run (more queries or neighbours checked) extracts nothing it has
    np.testing.assert_array_equal(again.features("train", "flower0")[1], cache.features("train", "flower0")[1])
    smaller = FeatureCache(tmp_path / "cache", images, max_side=128, max_features=1000)
    smaller.ensure("train", ["china0"])
    assert smaller.extracted == 1 and smaller.features("train", "china0")[0].max() < 128  # made otherwise: afresh


def verified_queries(tmp_path, photos, gallery_ids, labels, similarities_order):
    """One query (the warped photo) and a gallery of the named photos, nearest in similarities_order."""
    gallery = make_gallery(unit(*similarities_order), labels, unit([0, 0, 1]))
    queries = queries_of(gallery, unit([1, 0.05, 0]), 2)
    cache = FeatureCache(tmp_path / "cache", kaggle_folder(tmp_path / "images", photos), 512, 1000)
    return replace(queries, photos=Photos(cache, ["test"], ["query0"], gallery_ids))


def rank_with(name, queries, **verify):
    settings = SETTINGS.model_copy(update={"steps": SETTINGS.steps | {"verify": VERIFY | verify}})
    ranking = Method.parse(name, settings).rank(queries)
    return ranking.labels[0, 0], ranking.confidences[0, 0]


def test_verification_lifts_the_neighbour_whose_photo_matches_over_a_nearer_look_alike(tmp_path, photos, features):
    # the unrelated flower is the nearer embedding; china.jpg, of landmark 2, is the same scene as the query
    queries = verified_queries(tmp_path, photos, ["flower0", "china0"], [1, 2], [[1, 0.1, 0], [1, -0.3, 0]])
    assert rank_with("knn", queries)[0] == 1
    label, confidence = rank_with("knn+verify", queries)
    assert label == 2 and confidence == pytest.approx(queries.similarities[0, 1] + 1.0)  # capped: the full bonus
    label, confidence = rank_with("knn+verify", queries, cap=10_000)
    matched = inliers(features["warped"], features["china"], 0.8, 4.0)
    assert label == 2 and confidence == pytest.approx(queries.similarities[0, 1] + matched / 10_000)
    assert rank_with("knn+verify", queries, floor=matched + 1)[0] == 1  # below the floor: no bonus
    assert rank_with("knn+verify", queries, share=0.0)[0] == 1  # no query checked
    assert queries.photos.cache.extracted == 3  # the query and its two neighbours, once for all five rankings


def test_the_most_confident_queries_are_checked_by_the_test_queries_they_stand_for():
    confidences = np.array([0.2, 0.9, -np.inf, 0.5, 0.7])
    assert list(most_confident(confidences, np.ones(5), 0.4)) == [1, 4]
    assert list(most_confident(confidences, np.array([1, 3, 1, 1, 1.0]), 0.5)) == [1]
    assert list(most_confident(confidences, np.ones(5), 1.0)) == [1, 4, 3, 0]  # never one without an answer


def test_landmark_predict_verifies_every_photo_from_its_file_and_draws_the_inliers(tmp_path, photos, features):
    images = kaggle_folder(tmp_path / "images", photos)
    mine = tmp_path / "my photo.jpeg"
    mine.write_bytes(photos["warped"])
    gallery = make_gallery(unit([1, 0.1, 0], [1, -0.3, 0]), [1, 2], unit([0, 0, 1]))
    gallery.ids = np.array(["flower0", "china0"], dtype=object)  # the stored photos the gallery's rows are
    settings = SETTINGS.model_copy(update={"steps": SETTINGS.steps | {"verify": VERIFY | {"share": 0.02}}})
    method = Method.parse("knn+verify", settings).for_photos()  # 2% of one photo would check none
    cache = FeatureCache(tmp_path / "cache", images, 512, 1000)
    recognizer = Recognizer([], gallery, method, 2, cache)
    queries = recognizer.with_photos(queries_of(gallery, unit([1, 0.05, 0]), 2), [mine])
    answers, voters = recognizer.answers(queries, 1)
    assert answers == [[(2, pytest.approx(queries.similarities[0, 1] + 1.0))]]
    matched = [inliers(features["warped"], features[name], 0.8, 4.0) for name in ("flower", "china")]
    checked = queries.photos.checked(np.array([[1, 0, -1], [0, 1, -1]]))  # no query 1 was checked, nor position -1
    assert checked.tolist() == [[matched[1], matched[0], -1], [-1, -1, -1]]
    cache.save()
    assert sorted(path.name for path in (tmp_path / "cache").glob("*.ids.npy")) == [
        "nonlandmark.ids.npy", "test.ids.npy", "train.ids.npy"
    ]  # fmt: skip  # the user's photo is not kept
    shown = tmp_path / "shown.png"
    plot_answers([mine], voters, answers, images, shown)
    assert Image.open(shown).size[1] == 180


def test_landmark_predict_asks_for_the_gallery_photos_a_verifying_method_matches(tmp_path):
    params = parse_params(PARAMS)
    with pytest.raises(UserError, match=r"^--gallery-images .*gone: no such folder; --method knn\+verify matches "):
        Recognizer.load("no-variant", "knn+verify", params, "cpu", [tmp_path / "gone"])


def test_a_share_that_checks_no_test_query_is_refused_in_one_line():
    settings = SETTINGS.model_copy(update={"steps": SETTINGS.steps | {"verify": VERIFY | {"share": 0.02}}})
    methods = [Method.parse("knn", settings), Method.parse("knn+verify+query_penalty", settings)]
    check_reach(methods, 50)  # 2% of 50: one query
    with pytest.raises(UserError) as refused:
        check_reach(methods, 49)
    assert str(refused.value) == (
        "params.yaml recognize.steps.verify: share 0.02 of the 49 test queries checks none; raise it to at least "
        "0.0205, or take verify out of recognize.methods (knn+verify+query_penalty would equal knn+query_penalty)"
    )
