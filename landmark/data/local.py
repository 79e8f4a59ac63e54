"""An existing folder in the Kaggle layout, linked (or copied across file systems) into the pipeline."""

import os
import shutil
from pathlib import Path

from landmark.errors import UserError


def link_tree(source, dest) -> dict:
    """Hard-link source's train.csv, test.csv, sample_submission.csv, solution.csv and train/, test/ into dest."""
    source, dest = Path(source).expanduser(), Path(dest)
    for required in ("train.csv", "train", "test.csv", "test"):
        if not (source / required).exists():
            raise UserError(
                f"data.local.path: {source / required} is missing; point it at a folder in the Kaggle layout"
            )
    files = 0
    for name in ("train.csv", "test.csv", "sample_submission.csv", "solution.csv", "train", "test"):
        if not (source / name).exists():
            continue
        for path in [source / name] if (source / name).is_file() else (source / name).rglob("*"):
            if path.is_dir():
                continue
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
            files += 1
    return {"files": files}
