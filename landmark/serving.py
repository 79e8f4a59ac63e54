"""The submission's recogniser as one MLflow pyfunc model: registered by the submission stage as a new version of
`landmark` in the Model Registry, served by `mlflow models serve -m models:/landmark/<version>`, and run by
`landmark predict --model models:/landmark/<version>`, with the answers `landmark predict` gives in the workspace.

The model carries what landmark.predict.Recognizer reads (RecognizerFiles: each member's model and looks, the
gallery's embeddings, indexes and whitening), params.yaml (the method's settings), recognition.json (the
recognition and its method) and, where the data has one, the landmarks' names; and the landmark package itself as
code, so that a server in a fresh environment runs the code that made it. Its requirements are this environment's
versions of what the package needs to answer (requirements.lock's, where it was installed from the lock).

Input: a DataFrame with a column `image` of photo bytes (any format PIL opens; base64 in a JSON request, as MLflow
encodes binary). Output: one row per photo, in order: landmark_id (-1: no landmark), confidence, name (or ""),
landmarks (up to the top_k param's landmarks, JSON, as `landmark predict --json` lists them) and error (the
one-line reason a photo could not be read, "" where it was).
"""

import base64
import binascii
import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import requires, version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

LANDMARK_PACKAGE = Path(__file__).parent
# What the model does not import to answer: the pipeline's tools, the Kaggle client and its dependency, the reports.
NOT_SERVED = {"dvc", "kaggle", "six", "matplotlib"}


@dataclass
class RecognizerChoice:
    """What the register stage registers: the recognition (a variant or an ensemble) and the method it answers by
    (servable_method), the params file, a names file (landmark_id, category) or None, and the figures logged with
    it (its validation GAP, its test GAP where known)."""

    recognition: str
    method: str
    params: Path
    names: Path | None
    figures: dict


def pinned_requirements() -> list:
    """name==version of every package the landmark package needs to answer, as installed here."""
    needed = [line.split(";")[0] for line in requires("landmark") or [] if "extra ==" not in line]
    names = [next(part for part in requirement.replace(">", "=").split("=") if part).strip() for requirement in needed]
    return [f"{name}=={version(name)}" for name in names if name not in NOT_SERVED]


def signature() -> ModelSignature:
    """The model's input (image bytes), output and param (top_k) schema."""
    inputs = Schema([ColSpec("binary", "image")])
    outputs = Schema(
        [
            ColSpec("long", "landmark_id"),
            ColSpec("double", "confidence"),
            ColSpec("string", "name"),
            ColSpec("string", "landmarks"),
            ColSpec("string", "error"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("top_k", "long", 1)]))


def photo_bytes(value) -> bytes | None:
    """A request's photo: bytes as given, or base64 text decoded (as MLflow sends binary in JSON); None where it is
    neither."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            return None
    return None


def answer_rows(answers, names) -> list:
    """The output rows of answered photos: each a list of (landmark_id, confidence), best first, empty for none."""
    rows = []
    from landmark.predict import landmark_entries

    for found in answers:
        listed = landmark_entries(found, names)
        best = listed[0] if listed else {"landmark_id": -1, "confidence": 0.0}
        rows.append((best["landmark_id"], best["confidence"], best.get("name", ""), json.dumps(listed), ""))
    return rows


class RecognizerModel(mlflow.pyfunc.PythonModel):
    """The recogniser a request's photos are answered by, loaded from the model's artifacts."""

    def load_context(self, context):
        from landmark.predict import Recognizer, landmark_names
        from landmark.runtime import pick_device
        from landmark.settings import load_settings

        root = Path(context.artifacts["recognizer"])
        settings = load_settings(root / "params.yaml")
        chosen = json.loads((root / "recognition.json").read_text())
        device = pick_device(settings.runtime.device)
        self.recognizer = Recognizer.load(chosen["recognition"], chosen["method"], settings, device, [], root=root)
        self.names = landmark_names(root / "names.csv")
        self.max_pixels = settings.filter.max_image_pixels

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from landmark.data.images import check_bytes

        top_k = int((params or {}).get("top_k", 1))
        photos = [photo_bytes(value) for value in model_input["image"]]
        errors = [
            "not base64 or bytes" if data is None else check_bytes(data, self.max_pixels) or "" for data in photos
        ]
        readable = [position for position, error in enumerate(errors) if not error]
        rows = [(-1, 0.0, "", "[]", error) for error in errors]
        if readable:
            with tempfile.TemporaryDirectory() as folder:
                paths = [Path(folder) / f"{position}" for position in readable]
                for path, position in zip(paths, readable, strict=True):
                    path.write_bytes(photos[position])
                answers, _ = self.recognizer.answers(self.recognizer.found(paths), top_k)
            for position, row in zip(readable, answer_rows(answers, self.names), strict=True):
                rows[position] = row
        frame = pd.DataFrame(rows, columns=["landmark_id", "confidence", "name", "landmarks", "error"])
        return frame.astype({"landmark_id": np.int64, "confidence": np.float64})


def servable_method(method: str, settings) -> str:
    """method without the steps that match the gallery's stored photos (verify): the model carries the gallery's
    embeddings, not its photos."""
    from landmark.recognition.method import Method

    parsed = Method.parse(method, settings.recognize)
    dropped = {name for name, step in parsed.steps if "photos" in step.needs}
    return "+".join(part for part in method.split("+") if part not in dropped)


def log_recognizer(chosen: RecognizerChoice, settings, example: bytes) -> dict:
    """Log the chosen recogniser as a pyfunc model in an MLflow run of its own, registered as a new version of
    submission.registered_model; returns its uri (models:/name/version), name, version, run_id, recognition and
    method. example: a photo's bytes, the model's input example."""
    from landmark.files import link_or_copy, write_json
    from landmark.recognizer_files import RecognizerFiles
    from landmark.tracking import registration_run

    ensemble = settings.embed.ensembles.get(chosen.recognition)
    files = RecognizerFiles(chosen.recognition, ensemble.variants if ensemble else None, Path("."))
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging) / "recognizer"
        for path in files.every_file():
            link_or_copy(path, root / path)
        link_or_copy(chosen.params, root / "params.yaml")
        if chosen.names is not None and Path(chosen.names).is_file():
            link_or_copy(chosen.names, root / "names.csv")
        write_json(root / "recognition.json", {"recognition": chosen.recognition, "method": chosen.method})
        code = Path(staging) / "code" / LANDMARK_PACKAGE.name  # the package's sources, without its bytecode caches
        shutil.copytree(LANDMARK_PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with registration_run(chosen.figures) as run:
            info = mlflow.pyfunc.log_model(
                name="recognizer",
                python_model=RecognizerModel(),
                artifacts={"recognizer": str(root)},
                code_paths=[str(code)],
                signature=signature(),
                input_example=(pd.DataFrame({"image": [example]}), {"top_k": 1}),
                pip_requirements=pinned_requirements(),
                registered_model_name=settings.submission.registered_model,
                tags={"recognition": chosen.recognition, "method": chosen.method, "run_id": run.info.run_id},
            )
    name, number = settings.submission.registered_model, info.registered_model_version
    return {"uri": f"models:/{name}/{number}", "name": name, "version": number, "run_id": run.info.run_id,
            "recognition": chosen.recognition, "method": chosen.method}  # fmt: skip


def load_registered(uri: str):
    """The pyfunc model at uri (models:/name/version, runs:/…), from the project's MLflow store."""
    from mlflow.exceptions import MlflowException

    from landmark.errors import UserError
    from landmark.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise UserError(f"--model {uri}: {str(error).splitlines()[0]}; reports/registered.json names the last "
                        "registered version") from None  # fmt: skip


def predict_files(uri: str, paths, top_k: int) -> tuple:
    """(per photo file: its (landmark_id, confidence) list, best first; landmark_id -> name of those named) by the
    registered model at uri."""
    model = load_registered(uri)
    photos = pd.DataFrame({"image": [Path(path).read_bytes() for path in paths]})
    rows = model.predict(photos, params={"top_k": top_k})
    answers, names = [], {}
    for listed in rows["landmarks"]:
        found = json.loads(listed)
        answers.append([(item["landmark_id"], item["confidence"]) for item in found])
        names |= {item["landmark_id"]: item["name"] for item in found if "name" in item}
    return answers, names
