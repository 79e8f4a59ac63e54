"""Stage submission: the best variant by dev GAP (or submission.variant) predicts the test set.

Writes a validated Kaggle submission and, where the data has a solution file (the synthetic set does), its GAP.
IMAGES_DIR is the pack stage's output (or a folder in the Kaggle layout): test.csv, the test images, solution.csv.
Test images that are missing or unusable get an empty prediction.
Usage: python -m stages.submission MODELS_DIR METRICS_DIR IMAGES_DIR SUBMISSION_CSV SCORE_JSON
"""

import json
import sys
from pathlib import Path

import numpy as np

from landmark.data.images import scan
from landmark.data.layout import image_path, read_csv
from landmark.data.shards import packed_ids
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_json
from landmark.inference import TrainedModel
from landmark.params import load_params
from landmark.runtime import pick_device
from landmark.settings import parse_params
from landmark.submission import read_solution, score, write_validated_submission


def choose_variant(requested: str, variants, metrics_dir) -> str:
    """submission.variant (checked against the variants by landmark.settings), or the best by dev GAP."""
    if requested != "best":
        return requested
    scores = {}
    for name in variants:
        path = Path(metrics_dir) / f"{name}.json"
        if path.exists():
            scores[name] = json.loads(path.read_text())["gap"]
    if not scores:
        raise UserError(f"{metrics_dir}: no variant metrics; run the evaluate stages first (dvc repro)")
    return max(scores, key=scores.get)


@exits_cleanly
def main(models_dir, metrics_dir, images_dir, submission_csv, score_json):
    params = parse_params(load_params())
    settings, runtime = params.submission, params.runtime
    name = choose_variant(settings.variant, list(params.variants), metrics_dir)
    trained = TrainedModel.load(Path(models_dir) / name / "model.pt", pick_device(runtime.device))
    test_ids = read_csv(Path(images_dir) / "test.csv", ["id"])["id"].to_numpy()
    packed = packed_ids(images_dir, "test")
    if packed is not None:  # the pack stage packed the usable ones only
        has_image = np.isin(test_ids, packed)
    else:
        paths = [image_path(images_dir, "test", image_id) for image_id in test_ids]
        has_image = scan(test_ids, paths, settings.max_image_pixels)["reason"].isna().to_numpy()
    classes, confidences, _, _ = trained.predict(images_dir, "test", test_ids[has_image], runtime, desc="test")

    labels = np.full(len(test_ids), None, dtype=object)
    scores = np.zeros(len(test_ids))
    predicted_rows = np.flatnonzero(has_image)
    keep = confidences >= settings.min_confidence
    labels[predicted_rows[keep]] = trained.labels.landmarks(classes[keep])
    scores[predicted_rows] = confidences
    submission = write_validated_submission(submission_csv, test_ids, labels, scores, test_ids)

    result = {"variant": name, "test_images": int(len(test_ids)), "predicted": int(keep.sum())}
    solution_path = Path(images_dir) / "solution.csv"
    if solution_path.exists():
        result.update(score(submission, read_solution(solution_path)))
    write_json(score_json, result)
    scored = f", test GAP {result['gap']:.4f}" if "gap" in result else ""
    missing = f", {int((~has_image).sum())} without a usable image left empty" if (~has_image).any() else ""
    print(
        f"submission: {name} predicted {result['predicted']} of {len(test_ids)} test images{missing}{scored} -> {submission_csv}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
