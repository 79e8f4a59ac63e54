"""Train xception (bf16, channels_last, compiled) with train_variant on PROCESSES GPUs under torchrun, 256 images
per GPU per step (weak scaling), and print the global img/s. gpu_check.py runs it for 1 and for all GPUs.

Usage: python benchmarks/ddp_scaling.py SHARDS_DIR PROCESSES   (SHARDS_DIR: a packed train split)
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parents[1]))

from landmark.data.layout import read_csv  # noqa: E402
from landmark.settings import load_settings  # noqa: E402
from landmark.train import TrainingData, TrainingJob, train_variant  # noqa: E402


def main(shards, processes):
    if "WORLD_SIZE" not in os.environ:
        command = ["torchrun", "--standalone", f"--nproc-per-node={processes}", __file__, shards, processes]
        subprocess.run([sys.executable, "-m", "torch.distributed.run", *command[1:]], check=True)
        return
    settings = load_settings(Path(__file__).parents[1] / "params.yaml")
    ids = read_csv(Path(shards) / "train" / "index.csv", ["id"])["id"]
    frame = pd.DataFrame({"id": ids, "landmark_id": np.arange(len(ids)) % 100})
    classes = pd.DataFrame({"landmark_id": np.arange(100), "class_index": np.arange(100), "images": len(ids) // 100})
    variant = settings.variants["xception"].model_copy(
        update={"image_size": 256, "frozen_tensors": 85, "batch_size": 256 * int(processes), "steps": 100}
    )
    runtime = settings.runtime.model_copy(
        update={"num_workers": "auto", "eval_every": 10**9, "log_every": 50, "checkpoint_every": 10**9, "gpus": "auto"}
    )
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        data = TrainingData(shards, frame, frame[:2048], classes)
        job = TrainingJob("xception", variant, settings.train, runtime, data, Path(folder) / "m.pt", Path(folder))
        metrics = train_variant(job)
    if os.environ["RANK"] == "0":
        print(f"{processes} GPU(s), global batch {variant.batch_size}: {metrics['images_per_second']:.0f} img/s")


if __name__ == "__main__":
    main(*sys.argv[1:])
