"""Ensembles (stages/ensemble.py): several variants' whitened embeddings side by side, recognised like a variant."""

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from landmark.errors import UserError
from landmark.settings import parse_params
from stages.ensemble import combined
from tests.test_recognition import PARAMS, unit, write_embeddings


def test_the_combined_similarity_is_the_weighted_mean_of_the_variants():
    rng = np.random.default_rng(0)
    first, second = unit(*rng.standard_normal((4, 8))), unit(*rng.standard_normal((4, 5)))
    together = combined([first, second], [1.0, 3.0])
    expected = 0.25 * first @ first.T + 0.75 * second @ second.T
    np.testing.assert_allclose(together @ together.T, expected, atol=1e-6)


def embedded_variant(folder, rng):
    """A variant's five sets of random 8-d embeddings over 4 landmarks (gallery 40, dev 8), as the embed stage
    writes them."""
    folder.mkdir(parents=True)
    centres = unit(*rng.standard_normal((4, 8)))

    def around(labels):
        return unit(*(centres[np.maximum(labels, 0)] + 0.6 * rng.standard_normal((len(labels), 8))))

    for name, count, labelled in (("gallery", 40, True), ("dev", 8, True), ("holdout", 6, False), ("pool", 6, False),
                                  ("test", 10, False)):  # fmt: skip
        labels = np.arange(count) % 4 if labelled else np.full(count, -1)
        vectors = around(labels) if labelled else unit(*rng.standard_normal((count, 8)))
        classifier = (list(np.arange(count) % 4), list(np.linspace(0.3, 0.9, count)))
        write_embeddings(folder, name, [f"{name}{i}" for i in range(count)], labels, vectors, classifier)
    pd.DataFrame({"landmark_id": [0, 1, 2, 3], "images": [10] * 4}).to_csv(folder / "classes.csv", index=False)
    (folder / "looks.json").write_text(json.dumps({"scales": [1.0], "flip": False}))


def test_an_ensemble_of_one_variant_with_weight_1_recognises_as_that_variant(tmp_path, monkeypatch):
    embedded_variant(tmp_path / "embeddings" / "resnet50", np.random.default_rng(1))
    params = copy.deepcopy(PARAMS)
    params["index"].update(whitening="pca", whitening_dims=6)  # the variant is whitened; the ensemble is already
    params["embed"]["ensembles"] = {"solo": {"variants": ["resnet50"], "weights": [1]}}
    params["recognize"]["methods"] = ["softmax", "knn", "knn+query_penalty", "knn+dba+query_penalty"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "images").mkdir()
    (tmp_path / "photos/train").mkdir(parents=True)
    (tmp_path / "photos/train/index.csv").write_text("id\n")
    pd.DataFrame({"landmark_id": [0, 1, 2, 3]}).to_csv(tmp_path / "classes.csv", index=False)
    monkeypatch.chdir(tmp_path)
    from stages import ensemble, index, recognize

    index.main("embeddings/resnet50", "indexes/resnet50", "photos")
    recognize.main("embeddings/resnet50", "indexes/resnet50", "images", "photos", "classes.csv", "cache/a",
                   "graphs/a", "recognitions/a")  # fmt: skip
    ensemble.main("solo", "embeddings", "indexes", "ensembles/solo/embeddings")
    index.main("ensembles/solo/embeddings", "ensembles/solo/index", "--unwhitened")
    recognize.main("ensembles/solo/embeddings", "ensembles/solo/index", "images", "photos", "classes.csv",
                   "cache/b", "graphs/b", "recognitions/solo")  # fmt: skip
    variant, alone = (
        json.loads((tmp_path / f"recognitions/{name}/metrics.json").read_text()) for name in ("a", "solo")
    )
    assert variant["methods"].keys() == alone["methods"].keys()
    for method, figures in variant["methods"].items():
        for figure, value in figures.items():
            assert alone["methods"][method][figure] == pytest.approx(value, abs=1e-6), (method, figure)
    answers = [pd.read_csv(tmp_path / f"recognitions/{name}/predictions.csv") for name in ("a", "solo")]
    pd.testing.assert_frame_equal(answers[0].drop(columns="confidence"), answers[1].drop(columns="confidence"))
    np.testing.assert_allclose(answers[0]["confidence"], answers[1]["confidence"], atol=1e-5)


@pytest.mark.parametrize(
    "ensembles, message",
    [
        ({"mix": {"variants": ["resnet50", "vgg"], "weights": [1, 1]}},
         "params.yaml embed.ensembles.mix.variants: 'vgg' is not in embed.variants; add it there, or take mix out "
         "(-S '~embed.ensembles.mix')"),
        ({"mix": {"variants": ["resnet50", "recipe_xception"], "weights": [1]}},
         "params.yaml embed.ensembles.mix.weights: give one positive weight per variant, in their order"),
        ({"mix": {"variants": ["resnet50"], "weights": [0]}},
         "params.yaml embed.ensembles.mix.weights: 0 must be a positive number"),
        ({"resnet50": {"variants": ["resnet50"], "weights": [1]}},
         "params.yaml embed.ensembles.resnet50: a variant's name; name the ensemble otherwise"),
    ],
)  # fmt: skip
def test_an_ensemble_that_cannot_be_built_is_one_line(ensembles, message):
    params = copy.deepcopy(PARAMS)
    params["embed"]["ensembles"] = ensembles
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        parse_params(params)
