"""Stage download: lay out the data in the Kaggle layout under OUT_DIR, from data.source in params.yaml.

synthetic: the embedded offline dataset; kaggle: the competition through the Kaggle API (and GLDv2 shards for
2019); local: an existing folder. The folder appears only when complete (built beside it, then renamed).
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
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if source == "synthetic":
            summary = synthetic.generate(staging, **section(params, "data", "synthetic"))
        elif source == "kaggle":
            settings = section(params, "data", "kaggle")
            summary = kaggle.download(staging, cache_dir=Path("data/downloads"), **settings)
        elif source == "local":
            summary = local.link_tree(section(params, "data", "local", "path"), staging)
        else:
            raise UserError(f"params.yaml data.source: unknown source {source!r}; choose synthetic, kaggle or local")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # downloads stay in data/downloads, so a rerun resumes
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(f"download: {source} data in {out_dir}: " + ", ".join(f"{value} {key}" for key, value in summary.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
