"""Stage evaluate@VARIANT: dev GAP (Kaggle's), the paper's per-batch GAP, dev loss and top-1 accuracy, scored on
the predictions of training's final dev pass (models/VARIANT/dev_predictions.csv): the model does not run again.

Usage: python -m stages.evaluate DEV_PREDICTIONS_CSV METRICS_JSON
"""

import sys
from pathlib import Path

import pandas as pd

from landmark.errors import UserError, exits_cleanly
from landmark.files import write_json
from landmark.metrics import dev_metrics
from landmark.settings import load_settings


def read_dev_predictions(path) -> pd.DataFrame:
    """What training wrote (landmark.train.DevPass.write), its float32 values read back exactly."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file; the train stage writes it (dvc repro)")
    types = {"id": str, "landmark_id": "int64", "predicted": "int64", "confidence": "float32", "loss": "float32"}
    try:
        frame = pd.read_csv(path, dtype=types, usecols=list(types))
    except ValueError as error:  # a missing column, or a value of the wrong kind
        raise UserError(
            f"{path}: not a dev predictions file ({str(error).splitlines()[0]}); rerun its train stage"
        ) from None
    return frame[list(types)]


@exits_cleanly
def main(dev_predictions_csv, metrics_json):
    settings = load_settings().evaluate
    dev = read_dev_predictions(dev_predictions_csv)
    metrics = dev_metrics(*(dev[column].to_numpy() for column in dev.columns), settings.paper_batch_size)
    write_json(metrics_json, metrics)
    print(
        f"evaluate {dev_predictions_csv}: dev GAP {metrics['gap']:.3f} (per-batch {metrics['batch_gap']:.3f}), "
        f"loss {metrics['loss']:.3f}, accuracy {metrics['accuracy']:.3f} on {metrics['images']} images"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
