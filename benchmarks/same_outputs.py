"""Whether two runs of the pipeline (two checkouts after `dvc repro`, e.g. before and after a refactor) made the same
outputs: every variant's weights tensor for tensor, and every other output byte for byte.

Usage: python benchmarks/same_outputs.py BEFORE_DIR AFTER_DIR
Prints one line per variant and per output folder or file, then a summary; exits 1 where anything differs.
"""

import filecmp
import sys
from pathlib import Path

import torch

COMPARED = ["models", "plots", "metrics", "embeddings", "indexes", "recognitions", "ensembles", "submission.csv",
            "reports/submission.json"]  # fmt: skip


def same_weights(before: Path, after: Path) -> bool:
    """The two models' state dicts hold the same tensors under the same names (model.pt also holds the MLflow run
    id, which differs from run to run)."""
    first, second = (torch.load(path, weights_only=True)["state_dict"] for path in (before, after))
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def differing_files(before: Path, after: Path) -> list:
    """The files under before and after (a folder or a file) that are missing on one side or differ, model.pt
    files left out (compared by their weights)."""
    if before.is_file() or after.is_file():
        return [] if before.is_file() and after.is_file() and filecmp.cmp(before, after, shallow=False) else [before]
    names = {path.relative_to(before) for path in before.rglob("*") if path.is_file()}
    names |= {path.relative_to(after) for path in after.rglob("*") if path.is_file()}
    return sorted(
        name for name in names if name.name != "model.pt" and not (
            (before / name).is_file() and (after / name).is_file() and filecmp.cmp(before / name, after / name, False)
        )
    )  # fmt: skip


def main(before, after) -> int:
    before, after = Path(before), Path(after)
    differ = 0
    for model in sorted((before / "models").glob("*/model.pt")):
        same = same_weights(model, after / model.relative_to(before))
        differ += not same
        print(f"{model.parent.name}: weights {'equal, tensor for tensor' if same else 'DIFFER'}")
    for name in COMPARED:
        if not (before / name).exists() and not (after / name).exists():
            continue
        changed = differing_files(before / name, after / name)
        differ += bool(changed)
        print(f"{name}: {'byte for byte the same' if not changed else f'{len(changed)} differ, e.g. {changed[0]}'}")
    print(f"same_outputs: {'everything the same' if not differ else f'{differ} differ'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
