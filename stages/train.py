"""Stage train@VARIANT: train one variant of params.yaml (variants.VARIANT) and save the model.

Usage: python -m stages.train VARIANT IMAGES_DIR SPLIT_DIR CLASSES_CSV MODEL_PATH PLOTS_DIR CHECKPOINT_PATH

CHECKPOINT_PATH is outside DVC's outputs, so a killed run's checkpoint survives until the rerun resumes from it.
"""

import sys
from pathlib import Path

import pandas as pd

from landmark.data.layout import read_labels
from landmark.errors import exits_cleanly
from landmark.params import load_params, section
from landmark.train import train_variant


@exits_cleanly
def main(variant_name, images_dir, split_dir, classes_csv, model_path, plots_dir, checkpoint_path):
    params = load_params()
    variant = section(params, "variants", variant_name)
    metrics = train_variant(
        variant_name,
        variant,
        section(params, "train"),
        images_dir,
        read_labels(Path(split_dir) / "train.csv"),
        read_labels(Path(split_dir) / "dev.csv"),
        pd.read_csv(classes_csv),
        model_path,
        plots_dir,
        checkpoint_path,
    )
    print(
        f"train {variant_name}: {variant['steps']} steps in {metrics['seconds']:.0f} s "
        f"({metrics['images_per_second']:.0f} img/s), dev GAP {metrics['gap']:.3f}, dev loss {metrics['loss']:.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
