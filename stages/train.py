"""Stage train@VARIANT: train one variant of params.yaml (variants.VARIANT) and save the model.

Usage: python -m stages.train VARIANT IMAGES_DIR SPLIT_DIR CLASSES_CSV GALLERY_CSV MODEL_PATH PLOTS_DIR CHECKPOINT_PATH

A variant trains on the classes the filter kept (min_class_images: filter, the paper's), or on every class with
at least min_class_images train images: then on the gallery's images (every usable train image) but the dev set's,
as the Kaggle winners trained on all of GLDv2. No variant trains on a dev image, of whatever class.

CHECKPOINT_PATH is outside DVC's outputs, so a killed run's checkpoint survives until the rerun resumes from it.
With runtime.gpus above one (or auto on a machine with several GPUs) the stage reruns itself under torchrun, one
process per GPU (DistributedDataParallel); the first process writes the outputs. With runtime.nodes above one,
every node runs this same command with its own runtime.node_rank (node 0 under `dvc repro`, which gets the
outputs; the others directly), meeting at runtime.rendezvous.
"""

import os
import sys
from pathlib import Path

import pandas as pd

from landmark.data.layout import read_labels
from landmark.data.prepare import filter_classes
from landmark.distributed import relaunch_under_torchrun, split_batch, training_processes
from landmark.errors import exits_cleanly
from landmark.runtime import pick_device
from landmark.settings import load_settings
from landmark.train import EarlyStop, TrainingData, TrainingJob, train_variant


def training_data(min_class_images, split_dir, classes_csv, gallery_csv):
    """(train rows, dev rows, label encoding) for a variant's min_class_images. Whatever it learns, its dev pass
    asks about the dev images of the filter's classes (the paper's question, the same for every row); the long
    tail's dev images are for recognition's validation, and no row trains on a dev image."""
    every_dev, kept = read_labels(Path(split_dir) / "dev.csv"), pd.read_csv(classes_csv)
    dev = every_dev[every_dev["landmark_id"].isin(kept["landmark_id"])]
    if min_class_images == "filter":
        return read_labels(Path(split_dir) / "train.csv"), dev, kept
    gallery = read_labels(gallery_csv)
    train, classes = filter_classes(gallery[~gallery["id"].isin(every_dev["id"])], min_class_images)
    return train, dev[dev["landmark_id"].isin(classes["landmark_id"])], classes


@exits_cleanly
def main(variant_name, images_dir, split_dir, classes_csv, gallery_csv, model_path, plots_dir, checkpoint_path):
    settings = load_settings()
    variant, runtime = settings.variant(variant_name), settings.runtime
    if (never := EarlyStop.never_stops(variant.stop_early, variant.steps)) and "WORLD_SIZE" not in os.environ:
        print(f"train {variant_name}: {never}")
    processes = training_processes(runtime.gpus, pick_device(runtime.device))  # on this node
    split_batch(variant.batch_size, processes * runtime.nodes)
    if processes * runtime.nodes > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(processes, "stages.train", runtime.nodes, runtime.node_rank, runtime.rendezvous)
    train, dev, classes = training_data(variant.min_class_images, split_dir, classes_csv, gallery_csv)
    data = TrainingData(Path(images_dir), train, dev, classes)
    outputs = Path(model_path), Path(plots_dir), Path(checkpoint_path)
    metrics = train_variant(TrainingJob(variant_name, variant, settings.train, runtime, data, *outputs))
    if os.environ.get("RANK", "0") != "0":
        return
    if metrics["last_step"] < variant.steps:
        flat = f"the dev GAP rose in none of the last {variant.stop_early.patience} passes"
        print(f"train {variant_name}: stopped at step {metrics['last_step']} of {variant.steps}: {flat}")
    print(
        f"train {variant_name}: {metrics['steps']} steps in {metrics['seconds']:.0f} s "
        f"({metrics['images_per_second']:.0f} img/s, {metrics['data_wait']:.0%} of the time waiting for data), "
        f"dev GAP {metrics['gap']:.3f}, dev loss {metrics['loss']:.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
