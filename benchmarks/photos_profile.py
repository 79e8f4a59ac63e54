"""The photos profile end to end, as a user runs it on a folder of photos: where its time goes, stage by stage
(issue #34, item 1: about 2,000 photos in 10 minutes on a 2-core laptop).

Usage: python benchmarks/photos_profile.py PHOTOS_DIR NONLANDMARKS_DIR [--work DIR] [--set KEY=VALUE …]

It copies this working tree into a new git repository at DIR/photos (default /tmp/photos_profile), applies
profiles/photos.yaml, the two folders and the overrides to params.yaml (as `dvc exp run -S` would), and runs one
`dvc repro` there. Prints each stage's seconds and peak memory (rehearsal.stage_spans), the whole run's minutes,
the submission's row and test GAP, and writes them with the whole output to DIR/photos.json and DIR/photos.log.
benchmarks/sample_photos.py builds a folder of about 2,000 photos offline. Run alone: a stage timed beside other
work takes longer. Needs the project's environment active.
"""

import argparse
import json
import sys
from pathlib import Path

from rehearsal import finished, measured, overridden_copy, print_spans, stage_spans

from landmark.profiles import set_param_flags

ROOT = Path(__file__).parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="the photos in the Kaggle layout (data.local.path)")
    parser.add_argument("nonlandmarks", type=Path, help="photos without a landmark (data.nonlandmarks)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/photos_profile"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="another -S override")
    args = parser.parse_args()
    repo = args.work / "photos"
    flags = set_param_flags(ROOT / "profiles/photos.yaml", ROOT / "params.yaml")[1::2]
    folders = [f"data.local.path={args.photos.resolve()}", f"data.nonlandmarks={args.nonlandmarks.resolve()}"]
    overridden_copy(repo, flags + folders + args.overrides)
    run = measured([sys.executable, "-m", "dvc", "repro"], repo, check=False)
    (args.work / "photos.log").write_text(run["output"])
    stages = stage_spans(run)
    result = finished(repo, 0, run["seconds"]) | {"stages": stages, "overrides": args.overrides}
    (args.work / "photos.json").write_text(json.dumps(result, indent=1))
    print_spans(stages)
    if run["returncode"]:
        sys.exit(f"dvc repro failed in {list(stages)[-1] if stages else 'no stage'}:\n{run['output'][-3000:]}")
    submission = result["submission"]
    print(
        f"photos profile: {result['train_images']} train photos, dvc repro {run['seconds'] / 60:.1f} min; "
        f"submission {submission.get('variant')} by {submission.get('method')}, test GAP {submission.get('gap')}"
    )


if __name__ == "__main__":
    main()
