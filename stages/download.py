"""Stage download: lay out the data in the Kaggle layout under OUT_DIR, from data.source in params.yaml.

synthetic: the embedded offline dataset; kaggle: the competition through the Kaggle API (and GLDv2 shards for
2019); local: an existing folder; rehearsal: GLDv2 in miniature, served on this machine and fetched by kaggle's
code. The folder appears only when complete (built beside it, then renamed). An interrupted kaggle download resumes
on the next run: downloads are cached in data/downloads, and what was already unpacked into the folder being built
is not unpacked again.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from landmark.data import kaggle, local, rehearsal, synthetic
from landmark.errors import UserError, exits_cleanly
from landmark.settings import load_settings


def check_what_later_stages_run(build_models: bool) -> None:
    """`landmark check --no-hardware`: the recognition methods against the data's non-landmarks, and with
    build_models every variant built (not this machine's GPUs: the data may be prepared on another machine than the
    one that trains). In a process of its own: it gates the work but shapes none of this stage's outputs, so this
    stage does not depend on the recognition or the model code."""
    command = [
        sys.executable,
        "-m",
        "landmark.cli",
        "check",
        "--no-hardware",
        *([] if build_models else ["--no-models"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        raise UserError(errors[-1].removeprefix("error: ") if errors else result.stderr.strip())


@exits_cleanly
def main(out_dir):
    # Every value of params.yaml, not just data's: a mistake in the train params should show before the data
    # is prepared, not after.
    everything = load_settings()
    settings = everything.data
    source = settings.source
    check_what_later_stages_run(build_models=source in ("kaggle", "rehearsal"))  # before a download of hours
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    resumable = source == "kaggle"  # kaggle.download keeps what an interrupted run of its own had unpacked
    if not resumable:
        shutil.rmtree(staging, ignore_errors=True)
    pools = [settings.nonlandmarks] if settings.nonlandmarks else []
    shard_bytes = int(everything.pack.shard_size_mb * 2**20)
    try:
        if source == "synthetic":
            summary = synthetic.generate(staging, settings.synthetic)
        elif source == "kaggle":
            summary = kaggle.download(staging, settings.kaggle, Path("data/downloads"), shard_bytes)
        elif source == "rehearsal":
            mirrors = Path("data/downloads/rehearsal")
            summary, pool = rehearsal.download(staging, settings.rehearsal, mirrors, shard_bytes)
            pools.insert(0, pool)
        else:
            summary = local.link_tree(settings.local.path, staging)
        if pools:
            summary["added_nonlandmarks"] = local.add_nonlandmarks(pools, staging, shard_bytes)
    except BaseException:
        if not resumable:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(f"download: {source} data in {out_dir}: " + ", ".join(f"{value} {key}" for key, value in summary.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
