"""Stage recognize@VARIANT: every method of recognize.methods (landmark/retrieval.py) on the validation queries
(the dev set, each a landmark, and the held-out non-landmarks) and on the test set.

The validation GAP is what the submission chooses a method by; the test solution, where the data has one, is
only used to report. OUT_DIR gets metrics.json (per method: validation GAP, dev GAP, and the test figures),
predictions.csv (query_set, method, id, landmark_id, confidence; -1: no prediction) and neighbours.csv (the
nearest gallery images of a fixed sample of queries, for reports/retrieval.png).
Usage: python -m stages.recognize EMBEDDINGS_DIR INDEX_DIR IMAGES_DIR CLASSES_CSV OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.layout import read_csv
from landmark.errors import exits_cleanly
from landmark.files import write_csv, write_json
from landmark.params import load_params
from landmark.retrieval import (
    Neighbours,
    Whitening,
    mean_similarity,
    read_embeddings,
    read_index,
    recognize,
    use_gpu,
)
from landmark.scoring import recognition_scores, shown_queries
from landmark.settings import parse_method, parse_params
from landmark.submission import read_solution


@exits_cleanly
def main(embeddings_dir, index_dir, images_dir, classes_csv, out_dir):
    params = parse_params(load_params())
    settings, gpu = params.recognize, use_gpu(params.runtime.device)
    whitening = Whitening.load(Path(index_dir) / "whitening.npz")
    gallery, gallery_vectors = read_embeddings(embeddings_dir, "gallery")
    gallery_index, pool_index = (
        read_index(Path(index_dir) / f"{name}.faiss", settings.nprobe, settings.refine_factor, gpu)
        for name in ("gallery", "pool")
    )
    needs_correction = any("train_correction" in parse_method(method)[1] for method in settings.methods)
    gallery_penalty = (
        mean_similarity(pool_index, whitening(gallery_vectors), settings.pool_neighbours, desc="pool gallery")
        if needs_correction
        else None
    )

    sets = {name: read_embeddings(embeddings_dir, name) for name in ("dev", "holdout", "test")}
    validation = pd.concat([sets["dev"][0], sets["holdout"][0]], ignore_index=True)
    queries = {
        "validation": (validation, whitening(np.concatenate([sets["dev"][1], sets["holdout"][1]]))),
        "test": (sets["test"][0], whitening(sets["test"][1])),
    }
    found = {
        name: Neighbours.find(
            vectors,
            gallery_index,
            gallery["landmark_id"].to_numpy(),
            pool_index,
            settings.neighbours,
            settings.pool_neighbours,
            (rows["classifier_landmark"].to_numpy(), rows["classifier_confidence"].to_numpy()),
            name,
        )
        for name, (rows, vectors) in queries.items()
    }
    # The ban counts predictions over a query set: scaled to the validation set's size, the same share of it.
    test_size = max(1, len(queries["test"][0]))
    limits = {
        "validation": max(1, round(settings.max_label_predictions * len(validation) / test_size)),
        "test": settings.max_label_predictions,
    }
    predictions = []
    for method in settings.methods:
        for name, (rows, _) in queries.items():
            labels, confidences = recognize(method, found[name], gallery_penalty, limits[name], settings.blend_weight)
            predictions.append(
                pd.DataFrame(
                    {
                        "query_set": name,
                        "method": method,
                        "id": rows["id"],
                        "landmark_id": labels,
                        "confidence": confidences,
                    }
                )
            )
    predictions = pd.concat(predictions, ignore_index=True)

    solution_path = Path(images_dir) / "solution.csv"
    solution = read_solution(solution_path) if solution_path.exists() else None
    classes = read_csv(classes_csv, ["landmark_id"])["landmark_id"].to_numpy(np.int64)
    metrics = {
        "methods": recognition_scores(
            predictions, validation, solution, classes, settings.methods, settings.nonlandmark_share
        ),
        "gallery": {
            "images": len(gallery),
            "classes": int(gallery["landmark_id"].nunique()),
            "filter_classes": len(classes),
            "classifier_classes": len(read_csv(Path(embeddings_dir) / "classes.csv", ["landmark_id"])),
        },
    }
    write_json(Path(out_dir) / "metrics.json", metrics)
    write_csv(Path(out_dir) / "predictions.csv", predictions)
    write_csv(Path(out_dir) / "neighbours.csv", shown_queries(queries, found, gallery, solution))
    scores = metrics["methods"]
    best = max(settings.methods, key=lambda method: scores[method]["validation_gap"])
    tested = f", test GAP {scores[best]['test_gap']:.4f}" if solution is not None else ""
    print(
        f"recognize: {len(settings.methods)} methods over {len(validation)} validation and {len(queries['test'][0])} "
        f"test queries; best by validation GAP {best} ({scores[best]['validation_gap']:.3f}{tested}) -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
