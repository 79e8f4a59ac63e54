"""Photos added to a large gallery without retraining (issue #34, item 2: 10 photos into a gallery of 100,000, `dvc
repro` in 60 s, no train stage run), and removed again.

Usage: python benchmarks/gallery_growth.py [--gallery N] [--added K] [--work DIR] [--set KEY=VALUE …]

It copies this working tree into a new git repository at DIR/gallery (default /tmp/gallery_growth), fills its
gallery_photos folder (data.gallery_photos) with N synthetic photos of N/20 landmarks that no train image shows
(drawn as the synthetic set draws its own), and runs `dvc repro` three times, each timed stage by stage
(rehearsal.stage_spans): the first packs and embeds all N (setup, timed for growth), the second after K photos of
one more landmark are added, the third after they are removed. The overrides go into params.yaml as `dvc exp run -S`
would put them: the default keeps one variant, recipe_lite0_pretrained (512-d), with one look, so that the setup
embeds 100,000 photos in minutes. Prints each run's stages and minutes and which train stages ran (none should,
after the first), and writes them to DIR/gallery.json. Run alone. Needs the project's environment active.
"""

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from rehearsal import measured, overridden_copy, print_spans, stage_spans

from landmark.data.layout import image_path
from landmark.data.synthetic import make_blueprint, render

KEPT = "recipe_lite0_pretrained"
OTHER_VARIANTS = ["resnet50", "xception", "xception_spatial", "xception_cbp", "xception_cbp_selfattn",
                  "recipe_xception", "lite0", "lite0_pretrained"]  # fmt: skip
DEFAULT_OVERRIDES = [f"~variants.{name}" for name in OTHER_VARIANTS] + [
    f"embed.variants=[{KEPT}]", "~embed.ensembles.recipes", "embed.scales=[1]", "embed.flip=false",
]  # fmt: skip


def draw(job) -> None:
    """The photos of one landmark: (folder, landmark, ids, image size)."""
    folder, landmark, ids, size = job
    rng = np.random.default_rng(landmark)
    blueprint = make_blueprint(rng)
    for image_id in ids:
        path = image_path(folder, "train", image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        render(rng, size, blueprint).save(path, "JPEG", quality=90)


def add_photos(folder: Path, first_landmark: int, count: int, per_landmark: int = 20) -> pd.DataFrame:
    """count photos of new landmarks from first_landmark on, per_landmark each, drawn into folder; their rows."""
    landmarks = first_landmark + np.arange(count) // per_landmark
    ids = [f"{landmark:08x}{number:08x}" for number, landmark in enumerate(landmarks)]
    rows = pd.DataFrame({"id": ids, "landmark_id": landmarks})
    jobs = [(folder, int(landmark), group["id"].tolist(), 64) for landmark, group in rows.groupby("landmark_id")]
    with ProcessPoolExecutor() as pool:
        list(pool.map(draw, jobs, chunksize=16))
    return rows


def timed_repro(repo: Path, name: str) -> dict:
    run = measured([sys.executable, "-m", "dvc", "repro"], repo)
    stages = stage_spans(run)
    print(f"\n{name}: dvc repro {run['seconds']:.1f} s")
    print_spans(stages)
    trained = [stage for stage in stages if stage.startswith("train@")]
    print(f"train stages run: {', '.join(trained) or 'none'}")
    return {"seconds": run["seconds"], "stages": stages, "trained": trained, "output": run["output"][-4000:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="photos in the gallery before (default 100,000)")
    parser.add_argument("--added", type=int, default=10, help="photos added, then removed (default 10)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gallery_growth"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="another -S override")
    args = parser.parse_args()
    repo = args.work / "gallery"
    overridden_copy(repo, DEFAULT_OVERRIDES + args.overrides)
    photos = repo / "gallery_photos"
    listed = add_photos(photos, 100_000, args.gallery)
    listed.to_csv(photos / "train.csv", index=False)
    results = {"gallery": args.gallery, "added": args.added, "overrides": DEFAULT_OVERRIDES + args.overrides}
    results["setup"] = timed_repro(repo, f"setup: {args.gallery} gallery photos, everything trained and embedded")

    added = add_photos(photos, 999_999, args.added, per_landmark=args.added)
    pd.concat([listed, added]).to_csv(photos / "train.csv", index=False)
    results["add"] = timed_repro(repo, f"{args.added} photos of a new landmark added")
    listed.to_csv(photos / "train.csv", index=False)
    results["remove"] = timed_repro(repo, f"the {args.added} photos removed")
    (args.work / "gallery.json").write_text(json.dumps(results, indent=1))
    print(
        f"\ngallery growth: {args.gallery} photos; {args.added} added: dvc repro {results['add']['seconds']:.1f} s, "
        f"removed: {results['remove']['seconds']:.1f} s; train stages run after the setup: "
        f"{len(results['add']['trained']) + len(results['remove']['trained'])}"
    )


if __name__ == "__main__":
    main()
