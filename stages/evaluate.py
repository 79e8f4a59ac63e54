"""Stage evaluate@VARIANT: dev GAP (Kaggle's), the paper's per-batch GAP, dev loss and top-1 accuracy.

Usage: python -m stages.evaluate MODEL_PATH IMAGES_DIR DEV_CSV METRICS_JSON
"""

import sys

from landmark.data.layout import read_labels
from landmark.errors import exits_cleanly
from landmark.files import write_json
from landmark.inference import TrainedModel, dev_metrics
from landmark.params import load_params
from landmark.runtime import pick_device
from landmark.settings import section
from landmark.tracking import log_evaluation


@exits_cleanly
def main(model_path, images_dir, dev_csv, metrics_json):
    params = load_params()
    settings, runtime = section(params, "evaluate"), section(params, "runtime")
    trained = TrainedModel.load(model_path, pick_device(runtime.device))
    dev = read_labels(dev_csv)
    *predicted, targets = trained.predict(images_dir, "train", dev["id"], runtime, dev["landmark_id"], "evaluate")
    metrics = dev_metrics(dev["id"].to_numpy(), targets, *predicted, settings.paper_batch_size)
    write_json(metrics_json, metrics)
    log_evaluation(trained.mlflow_run_id, metrics, metrics_json)
    print(
        f"evaluate {model_path}: dev GAP {metrics['gap']:.3f} (per-batch {metrics['batch_gap']:.3f}), "
        f"loss {metrics['loss']:.3f}, accuracy {metrics['accuracy']:.3f} on {metrics['images']} images"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
