"""The recognize stage's two query sets and every method's answers to them.

- validation: the dev images (each a landmark, of every class with two images or more) and the held-out
  non-landmarks, searched against the gallery without the dev images, so that no query finds itself;
- test: every packed test image, searched against every usable train image, the dev images included.
"""

from dataclasses import replace

import numpy as np
import pandas as pd

from landmark.recognition.gallery import PARTS, VALIDATION_PARTS, Gallery, Queries
from landmark.recognition.scoring import validation_weights
from landmark.recognition.search import read_embeddings
from landmark.recognition.verification import Photos
from landmark.settings import Recognize


def stands_for(landmark_ids, test_size: int, recognize: Recognize) -> np.ndarray:
    """How many test queries each validation query stands for: its weight in the validation GAP
    (scoring.validation_weights), scaled so that the set adds up to the test set's size."""
    weights = validation_weights(landmark_ids, recognize.nonlandmark_share, recognize.dev_weighting)
    return weights * test_size / max(weights.sum(), 1e-12)


def query_sets(embeddings_dir, gallery: Gallery, recognize: Recognize, cache=None, widest: int = 0) -> dict:
    """name -> (rows: id, landmark_id (-1: none), classifier_landmark, classifier_confidence; its Queries), with
    where their photos are, for the verify step to match through cache (a verification.FeatureCache). widest: the
    most nearest images any method's step asks of a query (Method.widest), found by the first search."""
    read = {name: read_embeddings(embeddings_dir, name) for name in ("dev", "holdout", "test")}
    validation = pd.concat([read["dev"][0], read["holdout"][0]], ignore_index=True)
    test_size = len(read["test"][0])
    embeddings = {
        "validation": (
            validation,
            np.concatenate([read["dev"][1], read["holdout"][1]]),
            VALIDATION_PARTS,
            stands_for(validation["landmark_id"], test_size, recognize),
            ["train"] * len(read["dev"][0]) + ["nonlandmark"] * len(read["holdout"][0]),  # where the photos are
        ),
        "test": (read["test"][0], read["test"][1], PARTS, None, ["test"] * test_size),
    }
    sets = {}
    for name, (rows, vectors, parts, weights, splits) in embeddings.items():
        classifier = rows["classifier_landmark"].to_numpy(), rows["classifier_confidence"].to_numpy()
        queries = Queries.find(gallery, vectors, classifier, recognize.neighbours, parts, weights, name, widest)
        if cache is not None:
            queries = replace(queries, photos=Photos(cache, splits, rows["id"], gallery.ids))
        sets[name] = (rows, queries)
    return sets


def predictions(methods, sets: dict) -> pd.DataFrame:
    """Every method's first answer to every query: query_set, method, id, landmark_id (-1: none), confidence."""
    answers = []
    for method in methods:
        for name, (rows, queries) in sets.items():
            ranking = method.rank(queries)
            answers.append(
                pd.DataFrame(
                    {
                        "query_set": name,
                        "method": method.name,
                        "id": rows["id"],
                        "landmark_id": ranking.labels[:, 0],
                        "confidence": ranking.confidences[:, 0],
                    }
                )
            )
    return pd.concat(answers, ignore_index=True)
