"""Stage download: lay out the data in the Kaggle layout under OUT_DIR, from data.source in params.yaml.

synthetic: the embedded offline dataset; kaggle: the competition through the Kaggle API (and GLDv2 shards for
2019); local: an existing folder. The folder appears only when complete (built beside it, then renamed). An
interrupted kaggle download resumes on the next run: downloads are cached in data/downloads, and what was already
unpacked into the folder being built is not unpacked again.
"""

import shutil
import sys
from pathlib import Path

from landmark.data import kaggle, local, synthetic
from landmark.errors import UserError, exits_cleanly
from landmark.params import load_params, section


@exits_cleanly
def main(out_dir):
    params = load_params()
    source = section(params, "data", "source")
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    resumable = source == "kaggle"  # kaggle.download keeps what an interrupted run of its own had unpacked
    if not resumable:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        if source == "synthetic":
            summary = synthetic.generate(staging, **section(params, "data", "synthetic"))
        elif source == "kaggle":
            # Hours of downloading should not come before a mistake in the train params shows; the values only, as
            # the data may be prepared on another machine than the GPU one. Imported here: the check needs torch
            # and timm, which the other sources do without.
            from landmark.checks import check_params

            check_params(params, this_machine=False)
            settings = section(params, "data", "kaggle")
            summary = kaggle.download(staging, cache_dir=Path("data/downloads"), **settings)
        elif source == "local":
            summary = local.link_tree(section(params, "data", "local", "path"), staging)
        else:
            raise UserError(f"params.yaml data.source: unknown source {source!r}; choose synthetic, kaggle or local")
    except BaseException:
        if not resumable:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(f"download: {source} data in {out_dir}: " + ", ".join(f"{value} {key}" for key, value in summary.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
