"""Stage register: the submission's recogniser (its variant or ensemble, and its method) logged as one MLflow
pyfunc model in a run of its own and registered as a new version of submission.registered_model
(landmark.serving): `mlflow models serve -m models:/<name>/<version>` answers photos with it, and
`landmark predict --model models:/<name>/<version>` too. A method that verifies answers without its verify step
there (one line says so): the model carries the gallery's embeddings, not its photos.

OUT_JSON gets the model's URI, name, version, run, recognition and method. NAMES_CSV: the landmarks' names the model
carries, where the data has them (GLDv2's train_label_to_category.csv); IMAGES_DIR: the packed photos, the first
test photo of which is the model's input example.
Usage: python -m stages.register SUBMISSION_JSON IMAGES_DIR NAMES_CSV OUT_JSON
"""

import json
import sys
from pathlib import Path

from landmark.data.shards import image_reader, packed_ids
from landmark.errors import UserError, exits_cleanly
from landmark.files import write_json
from landmark.serving import RecognizerChoice, log_recognizer, servable_method
from landmark.settings import load_settings


def first_test_photo(images_dir) -> bytes:
    """The bytes of the first packed test photo: the registered model's input example."""
    ids = packed_ids(images_dir, "test")
    if ids is None or not len(ids):
        raise UserError(f"{images_dir}: no packed test photo to give the registered model as an example; run dvc repro")
    return image_reader(images_dir, "test", ids[:1]).read(0)


@exits_cleanly
def main(submission_json, images_dir, names_csv, out_json):
    settings = load_settings()
    chosen = json.loads(Path(submission_json).read_text())
    method = servable_method(chosen["method"], settings)
    if method != chosen["method"]:
        print(
            f"register: the registered model answers by {method}: {chosen['method']} matches the gallery's photos, "
            "which the model does not carry"
        )
    figures = {key: chosen[key] for key in ("validation_gap", "gap") if key in chosen}
    choice = RecognizerChoice(chosen["variant"], method, Path("params.yaml"), Path(names_csv), figures)
    registered = log_recognizer(choice, settings, first_test_photo(images_dir))
    write_json(out_json, registered)
    print(
        f"register: {chosen['variant']} by {method} -> {registered['uri']} (run {registered['run_id']}); serve it "
        f"with `mlflow models serve -m {registered['uri']} --env-manager local`"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
