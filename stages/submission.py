"""Stage submission: the recognition (variant of embed.variants × method of recognize.methods) with the best
validation GAP, or the one submission.variant / submission.method name, predicts the test set.

The choice never looks at the test solution: the validation GAP is measured on the dev set and the held-out
non-landmarks (the recognize stage). Writes a validated Kaggle submission and, where the data has a solution file
(the synthetic set does), its GAP. Test images without a usable image, and predictions below
submission.min_confidence, are left empty.
Usage: python -m stages.submission RECOGNITIONS_DIR IMAGES_DIR SUBMISSION_CSV SCORE_JSON
"""

import json
import sys
from pathlib import Path

import numpy as np

from landmark.data.layout import read_csv
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_json
from landmark.recognition.method import check_methods
from landmark.settings import load_settings, nonlandmark_shortfalls
from landmark.submission import read_solution, score, write_validated_submission


def choose(recognitions_dir, variants, methods, variant: str, method: str):
    """(variant, method, its validation GAP): the named ones, or the best by validation GAP where `best`."""
    scores = {}
    for name in variants if variant == "best" else [variant]:
        path = Path(recognitions_dir) / name / "metrics.json"
        if not path.exists():
            raise UserError(f"{path}: no such file; run the recognize stages first (dvc repro)")
        figures = json.loads(path.read_text())["methods"]
        for candidate in methods if method == "best" else [method]:
            scores[(name, candidate)] = figures[candidate]["validation_gap"]
    chosen = max(scores, key=scores.get)  # the first listed among equals
    return *chosen, scores[chosen]


@exits_cleanly
def main(recognitions_dir, images_dir, submission_csv, score_json):
    settings = load_settings()
    asked = settings.submission
    # the variant and method chosen with non-landmarks, or named
    check_methods(settings, nonlandmark_shortfalls(settings.data, settings.split))
    variant, method, validation_gap = choose(
        recognitions_dir, settings.embed.recognitions, settings.recognize.methods, asked.variant, asked.method
    )
    predictions = read_csv(Path(recognitions_dir) / variant / "predictions.csv", ["query_set", "method", "id"])
    predictions = predictions[(predictions["query_set"] == "test") & (predictions["method"] == method)]
    test_ids = read_csv(Path(images_dir) / "test.csv", ["id"])["id"].to_numpy()
    found = predictions.set_index("id").reindex(test_ids)
    without_image = int(found["landmark_id"].isna().sum())  # not packed: no usable image
    labels = found["landmark_id"].fillna("-1").astype(np.int64).to_numpy()
    confidences = found["confidence"].fillna("0").astype(float).to_numpy()
    keep = labels >= 0
    if asked.min_confidence is not None:
        keep &= confidences >= asked.min_confidence
    submission = write_validated_submission(
        submission_csv,
        test_ids,
        np.where(keep, labels, None),
        np.where(np.isfinite(confidences), confidences, 0),
        test_ids,
    )

    result = {
        "variant": variant,
        "method": method,
        "validation_gap": validation_gap,
        "test_images": len(test_ids),
        "predicted": int(keep.sum()),
    }
    solution_path = Path(images_dir) / "solution.csv"
    if solution_path.exists():
        result.update(score(submission, read_solution(solution_path)))
    write_json(score_json, result)
    scored = f", test GAP {result['gap']:.4f}" if "gap" in result else ""
    missing = f", {without_image} without a usable image left empty" if without_image else ""
    print(
        f"submission: {variant} by {method} (validation GAP {validation_gap:.3f}) predicted {result['predicted']} "
        f"of {len(test_ids)} test images{missing}{scored} -> {submission_csv}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
