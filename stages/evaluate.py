"""Stage evaluate@VARIANT: dev GAP (Kaggle's), the paper's per-batch GAP, dev loss and top-1 accuracy.

Usage: python -m stages.evaluate MODEL_PATH IMAGES_DIR DEV_CSV METRICS_JSON
"""

import sys

from landmark.data.layout import read_labels
from landmark.errors import exits_cleanly
from landmark.files import write_json
from landmark.params import load_params
from landmark.predict import dev_metrics, image_dataset, load_model, predict
from landmark.runtime import loader_workers, make_loader, pick_device
from landmark.settings import section
from landmark.tracking import log_evaluation


@exits_cleanly
def main(model_path, images_dir, dev_csv, metrics_json):
    params = load_params()
    settings, runtime = section(params, "evaluate"), section(params, "runtime")
    device = pick_device(runtime.device)
    model, checkpoint = load_model(model_path, device)
    dev = read_labels(dev_csv)
    class_of = {landmark: index for index, landmark in enumerate(checkpoint["landmark_ids"])}
    targets = dev["landmark_id"].map(class_of).to_numpy()
    size, decode = checkpoint["variant"].image_size, checkpoint["decode"]
    dataset = image_dataset(size, images_dir, "train", dev["id"], targets, decode)
    loader = make_loader(dataset, runtime.inference_batch_size, loader_workers(runtime.num_workers, device), device)
    classes, confidences, losses = predict(model, loader, device, desc="evaluate")
    metrics = dev_metrics(dev["id"].to_numpy(), targets, classes, confidences, losses, settings.paper_batch_size)
    write_json(metrics_json, metrics)
    log_evaluation(checkpoint["mlflow_run_id"], metrics, metrics_json)
    print(
        f"evaluate {model_path}: dev GAP {metrics['gap']:.3f} (per-batch {metrics['batch_gap']:.3f}), "
        f"loss {metrics['loss']:.3f}, accuracy {metrics['accuracy']:.3f} on {metrics['images']} images"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
