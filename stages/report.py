"""Stage report: reports/results.md (our dev metrics beside the paper's; recognition methods × variants; the
submission), reports/curves.png and reports/retrieval.png.

IMAGES_DIR and GALLERY_PHOTOS_DIR: the pack stage's and the gallery_photos stage's packed images, which
retrieval.png shows.

Usage: python -m stages.report METRICS_DIR PLOTS_DIR SUBMISSION_JSON RECOGNITIONS_DIR IMAGES_DIR GALLERY_PHOTOS_DIR
OUT_DIR
"""

import sys

from landmark.errors import exits_cleanly
from landmark.report import write_report
from landmark.settings import load_settings


@exits_cleanly
def main(metrics_dir, plots_dir, submission_json, recognitions_dir, images_dir, gallery_photos_dir, out_dir):
    settings = load_settings()
    images = [images_dir, gallery_photos_dir]
    metrics = write_report(metrics_dir, plots_dir, submission_json, recognitions_dir, images, settings, out_dir)
    best = max(metrics, key=lambda name: metrics[name]["gap"])
    print(
        f"report: {len(metrics)} variants, best {best} (dev GAP {metrics[best]['gap']:.3f}) -> {out_dir}/results.md, "
        "curves.png, retrieval.png"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
