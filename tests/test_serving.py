"""The recogniser as an MLflow model: registered by the register stage in a real MLflow store, answered by
`landmark predict --model models:/landmark/1` and by a real `mlflow models serve` on localhost, each as
`landmark predict` answers in the workspace."""

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from importlib.metadata import version

import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from PIL import Image

from landmark.data.layout import image_path, read_labels
from landmark.serving import photo_bytes, pinned_requirements
from tests.test_distributed import embed_command, embed_project
from tests.test_resume import environment

VARIANT = "resnet50"  # a variant of params.yaml: the tiny model embed_project saves stands in for its training
METHOD = "knn+verify+query_penalty"  # verify needs the gallery's photos: the registered model answers without it


def run(command, project, check=True):
    result = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
    assert result.returncode == 0 or not check, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_dataset):
    """A project whose resnet50 recognition is embedded, indexed and registered as models:/landmark/1; with the
    photos asked about: two train photos, a PNG and a text file behind .jpg names."""
    project = embed_project(tmp_path_factory.mktemp("serving") / "project", tiny_dataset, processes=1)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["embed"] |= {"variants": [VARIANT], "ensembles": {}}
    params["index"]["whitening_dims"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "models" / VARIANT).mkdir(parents=True)
    shutil.move(project / "model.pt", project / "models" / VARIANT / "model.pt")
    run(embed_command(f"models/{VARIANT}/model.pt", f"embeddings/{VARIANT}"), project)
    run(
        [sys.executable, "-m", "stages.index", f"embeddings/{VARIANT}", f"indexes/{VARIANT}", "gallery_photos"], project
    )
    chosen = {"variant": VARIANT, "method": METHOD, "validation_gap": 0.5, "gap": 0.25}
    (project / "submission.json").write_text(json.dumps(chosen))
    (project / "names.csv").write_text("landmark_id,category\n")
    registering = run([sys.executable, "-m", "stages.register", "submission.json", "shards", "names.csv",
                       "registered.json"], project)  # fmt: skip
    photos = project / "photos"
    photos.mkdir()
    train = read_labels(tiny_dataset / "train.csv")
    for number in range(2):
        shutil.copyfile(image_path(tiny_dataset, "train", train["id"].iat[number]), photos / f"{number}.jpg")
    Image.open(photos / "0.jpg").save(photos / "png.jpg", "PNG")
    (photos / "notes.jpg").write_text("not a photo")
    return project, registering.stdout, sorted(str(path) for path in photos.iterdir())


def test_the_register_stage_registers_a_version_that_carries_what_it_needs(registered):
    project, output, _ = registered
    assert json.loads((project / "registered.json").read_text()) | {"run_id": ""} == {
        "uri": "models:/landmark/1", "name": "landmark", "version": 1, "run_id": "", "recognition": VARIANT,
        "method": "knn+query_penalty",
    }  # fmt: skip
    assert "register: the registered model answers by knn+query_penalty: knn+verify+query_penalty matches" in output
    model_dirs = list((project / "mlartifacts").rglob("MLmodel"))
    assert len(model_dirs) == 1
    folder = model_dirs[0].parent
    requirements = (folder / "requirements.txt").read_text().split()
    assert {f"torch=={version('torch')}", f"faiss-cpu=={version('faiss-cpu')}", f"mlflow=={version('mlflow')}"} <= set(
        requirements
    ) and not [line for line in requirements if line.startswith("dvc")]
    assert (folder / "code/landmark/serving.py").is_file() and not list((folder / "code").rglob("__pycache__"))
    carried = folder / "artifacts/recognizer"
    assert (carried / f"indexes/{VARIANT}/gallery.faiss").is_file() and (carried / "params.yaml").is_file()
    assert json.loads((carried / "recognition.json").read_text()) == {"recognition": VARIANT,
                                                                       "method": "knn+query_penalty"}  # fmt: skip


def test_pinned_requirements_are_what_is_installed_for_what_answers():
    pins = dict(line.split("==") for line in pinned_requirements())
    assert pins["torch"] == version("torch") and pins["opencv-python-headless"] == version("opencv-python-headless")
    assert "dvc" not in pins and "kaggle" not in pins


def test_a_request_photo_is_bytes_or_base64():
    assert photo_bytes(b"\xff\xd8") == b"\xff\xd8"
    assert photo_bytes(base64.b64encode(b"\xff\xd8").decode()) == b"\xff\xd8"
    assert photo_bytes(3) is None


def predict_lines(project, photos, *model):
    result = run(["landmark", "predict", *photos, "--json", "--top-k", "3", *model], project, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # the text file cannot be read
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_by_the_registered_model_answers_as_the_workspace_does(registered):
    project, _, photos = registered
    workspace = predict_lines(project, photos, "--model", VARIANT, "--method", "knn+query_penalty")
    assert predict_lines(project, photos, "--model", "models:/landmark/1") == workspace
    assert [answer.get("error") for answer in workspace] == [None, None, "not an image", None]
    assert workspace[0]["landmarks"] == workspace[3]["landmarks"]  # the same pixels as a PNG
    unknown = run(["landmark", "predict", photos[0], "--model", "models:/landmark/7"], project, check=False)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: --model models:/landmark/7: ")
    assert len(unknown.stderr.splitlines()) == 1
    shown = run(["landmark", "predict", photos[0], "--model", "models:/landmark/1", "--show", "a.png"], project,
                check=False)  # fmt: skip
    assert shown.stderr.startswith("error: --show: a registered model answers by its own method")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mlflow_models_serve_answers_photos_as_landmark_predict(registered):
    project, _, photos = registered
    port = free_port()
    command = ["mlflow", "models", "serve", "-m", "models:/landmark/1", "--env-manager", "local", "--host",
               "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, cwd=project, env=environment(project), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None and time.time() < deadline, server.stdout.read() if server.poll() else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        encoded = [[base64.b64encode(open(path, "rb").read()).decode()] for path in photos]
        request = {"dataframe_split": {"columns": ["image"], "data": encoded}, "params": {"top_k": 3}}
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json=request, timeout=60)
        assert response.ok, response.text
        served = pd.DataFrame(response.json()["predictions"])
        expected = predict_lines(project, photos, "--model", "models:/landmark/1")
        for row, answer in zip(served.itertuples(), expected, strict=True):
            if "error" in answer:
                assert row.error == answer["error"] == "not an image" and row.landmark_id == -1
                continue
            assert row.error == "" and json.loads(row.landmarks) == answer["landmarks"]
            best = answer["landmarks"][0] if answer["landmarks"] else {"landmark_id": -1, "confidence": 0.0}
            assert row.landmark_id == best["landmark_id"] and np.isclose(row.confidence, best["confidence"])
        garbled = {"dataframe_split": {"columns": ["image"], "data": [["***not base64"]]}}
        refused = requests.post(f"http://127.0.0.1:{port}/invocations", json=garbled, timeout=60)
        assert refused.status_code == 400 and "Invalid base64" in refused.json()["message"]
        assert "Traceback" not in refused.text and "stack_trace" not in refused.json()
    finally:
        server.terminate()
        server.wait(timeout=30)
