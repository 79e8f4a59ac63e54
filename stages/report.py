"""Stage report: reports/results.md (our dev metrics beside the paper's) and reports/curves.png.

Usage: python -m stages.report METRICS_DIR PLOTS_DIR SUBMISSION_JSON OUT_DIR
"""

import sys

from landmark.errors import exits_cleanly
from landmark.params import load_params
from landmark.report import write_report
from landmark.settings import variant_names


@exits_cleanly
def main(metrics_dir, plots_dir, submission_json, out_dir):
    variants = variant_names(load_params())
    metrics = write_report(metrics_dir, plots_dir, submission_json, variants, out_dir)
    best = max(metrics, key=lambda name: metrics[name]["gap"])
    print(
        f"report: {len(metrics)} variants, best {best} (dev GAP {metrics[best]['gap']:.3f}) -> {out_dir}/results.md, {out_dir}/curves.png"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
