"""Stage train@VARIANT: train one variant of params.yaml (variants.VARIANT) and save the model.

Usage: python -m stages.train VARIANT IMAGES_DIR SPLIT_DIR CLASSES_CSV MODEL_PATH PLOTS_DIR CHECKPOINT_PATH

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
from landmark.distributed import relaunch_under_torchrun, split_batch, training_processes
from landmark.errors import exits_cleanly
from landmark.params import load_params
from landmark.runtime import pick_device
from landmark.settings import section, variant_settings
from landmark.train import train_variant


@exits_cleanly
def main(variant_name, images_dir, split_dir, classes_csv, model_path, plots_dir, checkpoint_path):
    params = load_params()
    variant = variant_settings(params, variant_name)
    runtime = section(params, "runtime")
    processes = training_processes(runtime.gpus, pick_device(runtime.device))  # on this node
    split_batch(variant.batch_size, processes * runtime.nodes)
    if processes * runtime.nodes > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(processes, "stages.train", runtime.nodes, runtime.node_rank, runtime.rendezvous)
    metrics = train_variant(
        variant_name,
        variant,
        section(params, "train"),
        runtime,
        images_dir,
        read_labels(Path(split_dir) / "train.csv"),
        read_labels(Path(split_dir) / "dev.csv"),
        pd.read_csv(classes_csv),
        model_path,
        plots_dir,
        checkpoint_path,
    )
    if os.environ.get("RANK", "0") != "0":
        return
    print(
        f"train {variant_name}: {metrics['steps']} steps in {metrics['seconds']:.0f} s "
        f"({metrics['images_per_second']:.0f} img/s, {metrics['data_wait']:.0%} of the time waiting for data), "
        f"dev GAP {metrics['gap']:.3f}, dev loss {metrics['loss']:.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
