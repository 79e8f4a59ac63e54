"""Stage ensemble@NAME: one recognition made of several variants (params.yaml embed.ensembles.NAME). Each image's
descriptor is the concatenation of its variants' whitened embeddings, each times sqrt(its weight / the weights'
sum), L2-normalised: the inner product of two such descriptors is the weighted mean of the variants' similarities.
Written as the embed stage writes a variant's sets (so the index and recognize stages take it as they are, the
index with no further whitening); the classifier's answers, classes.csv and looks.json are the first variant's.

Usage: python -m stages.ensemble NAME EMBEDDINGS_ROOT INDEXES_ROOT OUT_DIR
"""

import shutil
import sys
from pathlib import Path

import numpy as np

from landmark.errors import UserError, exits_cleanly
from landmark.files import atomic_path, write_csv
from landmark.recognition.search import Whitening, combined, read_embeddings
from landmark.settings import load_settings

SETS = ("gallery", "dev", "pool", "holdout", "test")  # what the embed stage writes for each variant


@exits_cleanly
def main(name, embeddings_root, indexes_root, out_dir):
    ensemble = load_settings().embed.ensembles.get(name)
    if ensemble is None:
        raise UserError(f"params.yaml embed.ensembles: no ensemble {name!r}")
    out_dir, first = Path(out_dir), Path(embeddings_root) / ensemble.variants[0]
    for set_name in SETS:
        rows, parts = None, []
        for variant in ensemble.variants:
            variant_rows, vectors = read_embeddings(Path(embeddings_root) / variant, set_name)
            if rows is not None and not rows["id"].equals(variant_rows["id"]):
                raise UserError(
                    f"{embeddings_root}/{variant}/{set_name}.csv: other images than {first}'s; rerun dvc repro"
                )
            rows = variant_rows if rows is None else rows
            parts.append(Whitening.load(Path(indexes_root) / variant / "whitening.npz")(vectors))
        with atomic_path(out_dir / f"{set_name}.npy") as temporary, open(temporary, "wb") as handle:
            np.save(handle, combined(parts, ensemble.weights))
        write_csv(out_dir / f"{set_name}.csv", rows)
    for kept in ("classes.csv", "looks.json"):
        shutil.copyfile(first / kept, out_dir / kept)
    shares = ", ".join(
        f"{variant} {weight:g}" for variant, weight in zip(ensemble.variants, ensemble.weights, strict=True)
    )
    print(f"ensemble {name}: {shares}; {sum(part.shape[1] for part in parts)}-d descriptors -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])
