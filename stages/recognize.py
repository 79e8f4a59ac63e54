"""Stage recognize@VARIANT: every method of recognize.methods (landmark/recognition/) on the validation queries
(the dev images, each a landmark, and the held-out non-landmarks, searched against the gallery without the dev
images) and on the test set (searched against every usable train image).

The validation GAP is what the submission chooses a method by; the test solution, where the data has one, is
only used to report. OUT_DIR gets metrics.json (per method: validation GAP, dev GAP, and the test figures),
predictions.csv (query_set, method, id, landmark_id, confidence; -1: no prediction) and neighbours.csv (the
nearest gallery images of a fixed sample of queries, for reports/retrieval.png). IMAGES_DIR and GALLERY_PHOTOS_DIR:
the pack stage's and the gallery_photos stage's packed images; FEATURES_DIR: where the verify step keeps the local
features of the photos it has matched, from one run to the next; GRAPHS_DIR: where DBA keeps each gallery image's
nearest (landmark.recognition.graph), so that a run after gallery photos were added searches for what changed only.
Usage:
  python -m stages.recognize EMBEDDINGS_DIR INDEX_DIR IMAGES_DIR GALLERY_PHOTOS_DIR CLASSES_CSV FEATURES_DIR \
    GRAPHS_DIR OUT_DIR
"""

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from landmark.data.layout import read_csv
from landmark.data.shards import INDEX
from landmark.errors import exits_cleanly
from landmark.files import write_csv, write_json
from landmark.recognition.gallery import VALIDATION_PARTS, Gallery
from landmark.recognition.graph import NeighbourGraphs
from landmark.recognition.method import check_methods, check_reach
from landmark.recognition.scoring import dev_weighting_note, recognition_scores, shown_queries
from landmark.recognition.search import use_gpu
from landmark.recognition.sets import predictions, query_sets
from landmark.recognition.verification import FeatureCache
from landmark.settings import load_settings, nonlandmark_shortfalls
from landmark.submission import read_solution


def gallery_photo_figures(gallery, learned, gallery_photos_dir) -> dict:
    """What the gallery knows that the classifier does not: its classes the classifier never learned, and the
    gallery photos (data.gallery_photos) with the classes only they show (no train image does)."""
    photos = read_csv(Path(gallery_photos_dir) / "train" / INDEX, ["id"])["id"]
    from_photos = pd.Index(gallery.ids).isin(photos)
    only_photos = np.setdiff1d(gallery.labels[from_photos], gallery.labels[~from_photos])
    return {
        "unlearned_classes": len(np.setdiff1d(gallery.labels, learned)),
        "gallery_photos": int(from_photos.sum()),
        "gallery_photo_only_classes": len(only_photos),
    }


@exits_cleanly
def main(embeddings_dir, index_dir, images_dir, gallery_photos_dir, classes_csv, features_dir, graphs_dir, out_dir):
    settings, out_dir = load_settings(), Path(out_dir)
    methods = check_methods(settings, nonlandmark_shortfalls(settings.data, settings.split))
    check_reach(methods, len(read_csv(Path(embeddings_dir) / "test.csv", ["id"])))  # before any search
    gpu = use_gpu(settings.runtime.device)
    recognize = settings.recognize
    dev_labels = read_csv(Path(embeddings_dir) / "dev.csv", ["landmark_id"])["landmark_id"]
    if note := dev_weighting_note(dev_labels, recognize.dev_weighting):
        print(note)
    gallery = Gallery.load(embeddings_dir, index_dir, recognize.nprobe, recognize.refine_factor, gpu)
    gallery.graphs = NeighbourGraphs(graphs_dir, writable=True)
    extraction = settings.local_features
    images = [Path(images_dir), Path(gallery_photos_dir)]
    cache = FeatureCache(features_dir, images, extraction.max_side, extraction.max_features, os.cpu_count() or 1)
    widest = max(method.widest(recognize.neighbours) for method in methods)
    sets = query_sets(embeddings_dir, gallery, recognize, cache, widest)
    predicted = predictions(methods, sets)
    solution_path = Path(images_dir) / "solution.csv"
    solution = read_solution(solution_path) if solution_path.exists() else None
    kept = read_csv(classes_csv, ["landmark_id"])["landmark_id"].to_numpy(np.int64)
    learned = read_csv(Path(embeddings_dir) / "classes.csv", ["landmark_id"])["landmark_id"].to_numpy(np.int64)
    validation, queries = sets["validation"]
    classes = (kept, learned)
    scores = recognition_scores(predicted, (validation, queries.stands_for), solution, classes, recognize.methods)
    figures = {
        "images": len(gallery),
        "validation_images": gallery.size(VALIDATION_PARTS),  # what validation searches: no dev image
        "classes": len(np.unique(gallery.labels)),
        "filter_classes": len(kept),
        "classifier_classes": len(learned),
    } | gallery_photo_figures(gallery, learned, gallery_photos_dir)
    cache.save()
    gallery.graphs.save()
    write_json(out_dir / "metrics.json", {"methods": scores, "gallery": figures})
    write_csv(out_dir / "predictions.csv", predicted)
    write_csv(out_dir / "neighbours.csv", shown_queries(sets, gallery, solution, settings.report.queries_per_kind))
    best = max(recognize.methods, key=lambda method: scores[method]["validation_gap"])
    tested = f", test GAP {scores[best]['test_gap']:.4f}" if solution is not None else ""
    graphs = f"; {summary}" if (summary := gallery.graphs.summary()) else ""
    print(
        f"recognize: {len(methods)} methods over {len(validation)} validation and {len(sets['test'][0])} test "
        f"queries; best by validation GAP {best} ({scores[best]['validation_gap']:.3f}{tested}){graphs} -> {out_dir}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
