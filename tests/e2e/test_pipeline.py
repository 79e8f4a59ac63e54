"""`dvc repro` of the whole pipeline on a tiny config, in a temporary git repository, with a real MLflow store."""

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from landmark.data.layout import image_path, read_labels
from landmark.data.synthetic import make_blueprint, render
from landmark.recognition.gallery import VALIDATION_PARTS, Gallery, Queries
from landmark.recognition.method import Method
from landmark.recognition.search import read_embeddings
from landmark.settings import parse_params
from landmark.submission import validate_submission
from tests.conftest import TINY_SYNTHETIC
from tests.e2e.project import DVC, ROOT, new_project, run, stages_run

pytestmark = pytest.mark.e2e

# parts: tested one by one; lite0_pretrained loads the ImageNet weights the package installs
E2E_VARIANTS = ["resnet50", "xception", "xception_cbp_selfattn", "recipe_resnet50", "lite0_pretrained"]
RETRIEVAL_VARIANTS = ["resnet50", "recipe_resnet50"]


def tiny_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # the recipe on ResNet50, a row of the paper profile: the cheapest recipe to train here
    params["variants"]["recipe_resnet50"] = params["variants"]["recipe_xception"] | {"backbone": "resnet50"}
    params["variants"] = {name: params["variants"][name] for name in E2E_VARIANTS}
    params["embed"]["variants"] = RETRIEVAL_VARIANTS
    params["embed"]["ensembles"] = {"both": {"variants": RETRIEVAL_VARIANTS, "weights": [1, 0.5]}}
    params["data"]["synthetic"] = dict(TINY_SYNTHETIC)
    params["filter"]["min_samples_per_class"] = 4
    params["split"]["dev_fraction"] = 0.25
    params["runtime"].update(log_every=1, eval_every=2)
    params["variant_defaults"].update(image_size=32, batch_size=8, steps=3)
    # spatial verification runs for real, on photos too small to show many keypoints
    params["recognize"]["methods"] = params["recognize"]["methods"] + ["knn+verify+query_penalty"]
    params["recognize"]["steps"]["verify"].update(share=0.5, neighbours=3)
    return params


SECRET = "KGAT_sentinel_5f1e0c2a9b"


def changed_stages(repo, env, edit) -> set:
    """The stages `dvc status` says are out of date after edit(params) is written to params.yaml; then the
    params are put back as they were."""
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], repo, env)))
    finally:
        path.write_text(original)


def dropped_class_is_recognised(repo, variant):
    """An image of a class the filter dropped is in the variant's index, and a query of it is named right; the test
    index holds every dev image, and validation never finds one."""
    gallery = Gallery.load(repo / "embeddings" / variant, repo / "indexes" / variant, nprobe=1, refine_factor=1)
    kept = set(read_labels(repo / "data/filtered/train.csv")["landmark_id"])
    dropped = np.flatnonzero(~np.isin(gallery.labels, list(kept)))
    assert len(dropped) and set(gallery.ids) == set(read_labels(repo / "data/filtered/gallery.csv")["id"])
    query = gallery.embeddings_at(dropped[:1])
    settings = parse_params(yaml.safe_load((repo / "params.yaml").read_text())).recognize
    found = Queries.find(gallery, query, ([-1], [0.0]), 3)
    assert found.positions[0, 0] == dropped[0] and found.similarities[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert Method.parse("knn", settings).rank(found).labels[0, 0] == gallery.labels[dropped[0]]
    dev, vectors = read_embeddings(repo / "embeddings" / variant, "dev")
    assert set(dev["id"]) == set(read_labels(repo / "data/split/dev.csv")["id"]) <= set(gallery.ids)
    assert not dev["landmark_id"].isin(kept).all()  # the tail gives dev images too
    validation = Queries.find(gallery, vectors, (dev["classifier_landmark"], dev["classifier_confidence"]), 3,
                              VALIDATION_PARTS)  # fmt: skip
    assert validation.positions.max() < gallery.size(VALIDATION_PARTS) and not set(dev["id"]) & set(
        gallery.ids[validation.positions[validation.positions >= 0]]
    )


def stage_and_predict_agree(repo, env, recognition):
    """`landmark predict` on test photos gives the label and confidence the recognize stage gave them, by a method
    that never refuses and by one whose train corrections are computed for the images the photos reach; for an
    ensemble, each variant's model embeds them and the ensemble's descriptor is made as the ensemble stage makes it."""
    predictions = pd.read_csv(repo / "recognitions" / recognition / "predictions.csv", dtype={"id": str})
    for method in ("knn+frequency_ban", "knn+train_correction"):
        mine = predictions[(predictions["query_set"] == "test") & (predictions["method"] == method)].head(3)
        assert len(mine) == 3
        photos = [str(image_path(repo / "data/raw", "test", image_id)) for image_id in mine["id"]]
        command = ["landmark", "predict", *photos, "--json", "--top-k", "1", "--model", recognition]
        result = subprocess.run(command + ["--method", method], cwd=repo, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        stage = zip(mine["landmark_id"], mine["confidence"], strict=True)
        for answer, (label, confidence) in zip(map(json.loads, result.stdout.splitlines()), stage, strict=True):
            if answer["no_landmark"]:  # refused: the suppression left it no positive confidence
                assert method == "knn+train_correction" and confidence <= 1e-5
            else:
                assert answer["landmarks"][0]["landmark_id"] == label
                assert answer["landmarks"][0]["confidence"] == pytest.approx(confidence, abs=1e-4)


def predict_answers_each_photo(repo, env, score, tmp_path):
    """`landmark predict` on a train photo, a PNG behind a .jpg name, a text file and a missing file: one line
    each, in order; a missing model is one line."""
    variant = score["variant"] if score["variant"] in RETRIEVAL_VARIANTS else "recipe_resnet50"  # not the ensemble
    gallery = read_labels(repo / "embeddings" / variant / "gallery.csv")
    image_id, landmark = gallery["id"].iat[0], int(gallery["landmark_id"].iat[0])
    photo = image_path(repo / "data/raw", "train", image_id)
    png = tmp_path / "png.jpg"
    Image.open(photo).save(png, "PNG")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    names = tmp_path / "names.csv"
    names.write_text(f"landmark_id,category\n{landmark},http://commons.wikimedia.org/wiki/Category:Old_Town_Hall\n")
    command = [
        "landmark",
        "predict",
        str(photo),
        str(png),
        str(text),
        str(tmp_path / "gone.jpg"),
        "--names",
        str(names),
    ]
    # with no --model, the submission's recognition answers (an ensemble too), as when named
    chosen = subprocess.run(command + ["--json"], cwd=repo, env=env, capture_output=True, text=True)
    named = ["--model", score["variant"], "--method", score["method"]]
    assert chosen.stdout == subprocess.run(command + ["--json", *named], cwd=repo, env=env, capture_output=True,
                                           text=True).stdout  # fmt: skip
    assert chosen.returncode == 1 and len(chosen.stdout.splitlines()) == 4
    command += ["--model", f"models/{variant}/model.pt"]
    shown = tmp_path / "answers.png"
    result = subprocess.run(
        command + ["--json", "--show", str(shown)], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr  # one file could not be read: the rest are still answered
    assert Image.open(shown).size[1] == 2 * 180  # a row (2 inches at 90 dpi) per photo answered; errors are printed
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer["file"] for answer in answers] == [str(photo), str(png), str(text), str(tmp_path / "gone.jpg")]
    assert answers[2] == {"file": str(text), "error": "not an image"}
    assert answers[3] == {"file": str(tmp_path / "gone.jpg"), "error": "no such file"}
    for answer in answers[:2]:
        assert answer["no_landmark"] == (not answer["landmarks"]) and len(answer["landmarks"]) <= 3
    assert answers[0]["landmarks"] == answers[1]["landmarks"]  # the same pixels, whatever the file's format
    plain = subprocess.run(command[:3] + ["--model", f"models/{variant}/model.pt", "--top-k", "1", "--method",
                            "knn+verify", "--names", str(names)], cwd=repo, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    checked = tiny_params()["recognize"]["steps"]["verify"]["neighbours"]  # with every photo given, not a share
    assert f"verify photos: {checked} new pairs of 1 queries matched" in plain.stderr
    assert plain.stdout.startswith(f"{photo}: {landmark} (") and plain.stdout.rstrip().endswith(") Old Town Hall")
    missing = subprocess.run(command[:3] + ["--model", "models/none/model.pt"], cwd=repo, env=env, capture_output=True,
                             text=True)  # fmt: skip
    assert (
        missing.returncode == 1
        and missing.stderr == "error: models/none/model.pt: no such model; run `dvc repro` to train it\n"
    )
    unindexed = subprocess.run(command[:3] + ["--model", "models/xception/model.pt"], cwd=repo, env=env,
                               capture_output=True, text=True)  # fmt: skip
    assert unindexed.returncode == 1  # xception is trained, but not in embed.variants: it has no index
    assert unindexed.stderr == "error: indexes/xception/whitening.npz: no such file; run the index stage (dvc repro)\n"


def new_landmark_photos(folder, landmark: int, count: int, query) -> None:
    """count photos of a landmark no class of the dataset shows, drawn as the synthetic set draws its own, into
    folder's Kaggle layout and its train.csv; and at query, a photo of it that is not among them (the first one
    mirrored)."""
    rng = np.random.default_rng(landmark)
    blueprint = make_blueprint(rng)
    ids = [f"{landmark:04d}{number:012d}" for number in range(count)]
    for image_id in ids:
        path = image_path(folder, "train", image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        render(rng, TINY_SYNTHETIC["image_size"], blueprint).save(path, "JPEG", quality=90)
    pd.DataFrame({"id": ids, "landmark_id": landmark}).to_csv(folder / "train.csv", index=False)
    Image.open(image_path(folder, "train", ids[0])).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(query, "JPEG")


def gallery_photos_name_a_new_landmark(repo, env, dvc, query):
    """Photos of a landmark no model learned, added to data.gallery_photos: `dvc repro` packs and embeds them and
    trains nothing; landmark predict then names it, and the report says only the gallery knows it. Removed again,
    the gallery is as it was. Put back and tracked by DVC (README: to share them), they are found in the embedding
    cache; the clone below pulls them."""
    assert "Data and pipelines are up to date" in run(dvc + ["status"], repo, env)
    before = (repo / "embeddings/recipe_resnet50/gallery.csv").read_text()
    new, photos = 777, repo / "gallery_photos"
    new_landmark_photos(photos, new, 3, query)
    assert set(json.loads(run(dvc + ["status", "--json"], repo, env))) == {"gallery_photos"}
    added = run(dvc + ["repro"], repo, env)
    ran = stages_run(added)
    assert not {stage for stage in ran if stage.startswith(("train@", "evaluate@"))} and "saliency" not in ran
    assert {"gallery_photos", "embed@recipe_resnet50", "index@recipe_resnet50", "recognize@recipe_resnet50"} <= ran
    assert "gallery_photos: 3 photos listed in gallery_photos/train.csv: 3 packed now" in added
    assert re.search(r"embed: .* \(.*3 embedded now, \d+ found in embedding_cache/recipe_resnet50\)", added)
    assert "Data and pipelines are up to date" in run(dvc + ["status"], repo, env)
    learned = read_labels(repo / "data/filtered/gallery.csv")["landmark_id"]
    assert new not in set(learned)  # no train image shows it: no model learned it
    answer = run(["landmark", "predict", str(query), "--json", "--top-k", "1", "--method", "knn"], repo, env)
    assert json.loads(answer)["landmarks"][0]["landmark_id"] == new, answer
    known = json.loads((repo / "recognitions/recipe_resnet50/metrics.json").read_text())["gallery"]
    assert (known["gallery_photos"], known["gallery_photo_only_classes"]) == (3, 1)
    assert "| recipe_resnet50 | " in (repo / "reports/results.md").read_text().split("only in gallery photos |")[1]

    shutil.rmtree(photos / "train")  # removed: the gallery as it was
    (photos / "train.csv").write_text("id,landmark_id\n")
    removed = run(dvc + ["repro"], repo, env)
    assert "3 removed" in removed and not {stage for stage in stages_run(removed) if stage.startswith("train@")}
    assert (repo / "embeddings/recipe_resnet50/gallery.csv").read_text() == before

    new_landmark_photos(photos, new, 3, query)
    run(["git", "rm", "-r", "-q", "--cached", "gallery_photos"], repo, env)
    run(dvc + ["add", "-q", "gallery_photos"], repo, env)
    shared = run(dvc + ["repro"], repo, env)
    assert re.search(r"embed: .* \(.*0 embedded now, \d+ found in embedding_cache/recipe_resnet50\)", shared)


def registered_model_answers_as_predict(repo, env, score):
    """The register stage's model (the submission's recognition, a variant or the ensemble) answers test photos
    as `landmark predict` does in the workspace by the same recognition and method."""
    registered = json.loads((repo / "reports/registered.json").read_text())
    assert registered["recognition"] == score["variant"] and registered["uri"] == "models:/landmark/1"
    photos = sorted(str(path) for path in (repo / "data/raw/test").rglob("*.jpg"))[:3]
    answers = {}
    for model in (["--model", registered["uri"]], ["--model", score["variant"], "--method", registered["method"]]):
        answers[model[1]] = run(["landmark", "predict", *photos, "--json", "--top-k", "2", *model], repo, env)
    assert answers[registered["uri"]] == answers[score["variant"]]


def queued_experiments_run_side_by_side(repo, env, dvc):
    """Two queued experiments run at once by two queue workers: both finish, and both land in the project's one
    sqlite MLflow store with their params, curves and model, with no lock error."""
    rates = ("0.003", "0.004")
    for rate in rates:
        run(dvc + ["exp", "run", "--queue", "-S", f"++variants.xception.lr={rate}", "train@xception"], repo, env)
    run(dvc + ["queue", "start", "-j", "2"], repo, env)
    deadline = time.time() + 900
    while re.search(r"\b(Queued|Running)\b", status := run(dvc + ["queue", "status"], repo, env)):
        assert time.time() < deadline, status
        time.sleep(3)
    assert len(re.findall(r"\bSuccess\b", status)) == 2, status
    logs = "".join(run(dvc + ["queue", "logs", task], repo, env) for task in re.findall(r"^(\w{7}) ", status, re.M))
    assert "database is locked" not in logs and "Traceback" not in logs
    with sqlite3.connect(repo / "mlflow.db") as db:
        finished = db.execute(
            "select runs.run_uuid, params.value from runs join params on params.run_uuid = runs.run_uuid "
            "where params.key = 'variant.lr' and params.value in (?, ?) and runs.status = 'FINISHED'",
            rates,
        ).fetchall()
        assert sorted(rate for _, rate in finished) == sorted(rates)
        for run_id, _ in finished:
            curve = db.execute("select count(*) from metrics where run_uuid = ? and key = 'train_loss'", (run_id,))
            assert curve.fetchone() == (3,)  # one point per step
            assert (repo / "mlartifacts" / run_id / "artifacts" / "model.pt").is_file()


@dataclass
class Project:
    """The tiny pipeline's repository after its first `dvc repro`, shared by the parts below, which run in order
    (each builds on the state the one before left)."""

    repo: Path
    env: dict
    folder: Path  # beside the repository: the remote, the clone, files a part makes
    first: str  # the first repro's output
    score: dict  # reports/submission.json

    def status_says_up_to_date(self) -> bool:
        return "Data and pipelines are up to date" in run(DVC + ["status"], self.repo, self.env)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    folder = tmp_path_factory.mktemp("e2e")
    repo = folder / "repo"
    env = new_project(repo, tiny_params(), {"KAGGLE_API_TOKEN": SECRET})  # must never reach a log or an output
    first = run(DVC + ["repro"], repo, env)
    return Project(repo, env, folder, first, json.loads((repo / "reports/submission.json").read_text()))


@pytest.mark.timeout(900)  # the first repro of the whole pipeline, timed with the part that needs it
def test_the_first_repro_runs_every_stage_once_and_scores_a_submission(project):
    repo, first, score = project.repo, project.first, project.score
    per_variant = {f"{stage}@{name}" for stage in ("train", "evaluate") for name in E2E_VARIANTS}
    per_variant |= {f"{stage}@{name}" for stage in ("embed", "index", "recognize") for name in RETRIEVAL_VARIANTS}
    per_variant |= {f"{stage}@both" for stage in ("ensemble", "ensemble_index", "ensemble_recognize")}
    everything_once = {"settings", "download", "filter", "split", "pack", "gallery_photos", "submission", "register",
                       "saliency", "report"}  # fmt: skip
    assert stages_run(first) == everything_once | per_variant
    for variant in E2E_VARIANTS:
        metrics = json.loads((repo / f"metrics/{variant}.json").read_text())
        assert set(metrics) >= {"gap", "batch_gap", "loss", "accuracy"} and 0 <= metrics["gap"] <= 1
    test_ids = (repo / "data/raw/test.csv").read_text().split()[1:]
    validate_submission(repo / "submission.csv", test_ids)
    assert {"gap", "public", "private", "variant", "method", "validation_gap"} <= set(score)
    assert score["variant"] in RETRIEVAL_VARIANTS + ["both"]
    results = (repo / "reports/results.md").read_text()
    assert "resnet50" in results and "xception" in results and "0.674" in results
    assert "# Recognition: methods × variants" in results and f"| **{score['variant']}** |" in results
    for figure in ("curves.png", "saliency.png", "retrieval.png"):
        assert (repo / "reports" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with sqlite3.connect(repo / "mlflow.db") as db:
        trained = len(E2E_VARIANTS)
        assert db.execute(
            "select count(*) from runs where status = 'FINISHED' and name not in ('filter', 'register')"
        ).fetchone() == (trained,)
        assert db.execute("select count(distinct run_uuid) from metrics where key = 'eval_gap'").fetchone() == (
            trained,
        )
        assert db.execute("select count(*) from metrics where key = 'bad_images' and value = 0").fetchone() == (1,)
    assert SECRET not in first


def test_a_class_the_filter_dropped_is_still_recognised(project):
    dropped_class_is_recognised(project.repo, "recipe_resnet50")


def test_predict_gives_the_stage_s_answers_for_a_variant_and_an_ensemble(project):
    stage_and_predict_agree(project.repo, project.env, "recipe_resnet50")
    stage_and_predict_agree(project.repo, project.env, "both")


def test_predict_answers_each_photo_or_says_why_not(project, tmp_path):
    predict_answers_each_photo(project.repo, project.env, project.score, tmp_path)


def test_the_registered_model_answers_as_predict_does(project):
    registered_model_answers_as_predict(project.repo, project.env, project.score)


def test_a_second_repro_runs_nothing(project):
    second = run(DVC + ["repro"], project.repo, project.env)
    assert stages_run(second) == set() and "Data and pipelines are up to date" in second
    assert SECRET not in second


def test_each_param_reruns_exactly_the_stages_it_shapes(project):
    repo, env = project.repo, project.env
    trains = {f"train@{name}" for name in E2E_VARIANTS}
    # How fast it runs is nobody's param: changing every runtime setting leaves every stage up to date.
    speed = dict(num_workers=1, log_every=2, eval_every=3, checkpoint_every=1, inference_batch_size=7, compile=False)
    assert changed_stages(repo, env, lambda params: params["runtime"].update(speed)) == set()
    # A variant default changes every variant that inherits it (and the settings stage, which parses every param
    # but the runtime's).
    assert changed_stages(repo, env, lambda params: params["variant_defaults"].update(lr=0.002)) == trains | {
        "settings"
    }
    flip = changed_stages(repo, env, lambda params: params["variant_defaults"]["augmentation"].update(flip=0.25))
    assert flip == trains | {"settings"}
    # Recognition's settings rerun recognition alone (and the registered model, which answers by them); the
    # index's, the index.
    recognitions = {f"recognize@{name}" for name in RETRIEVAL_VARIANTS} | {"ensemble_recognize@both"}
    ban = {"max_label_predictions": 3}
    assert changed_stages(repo, env, lambda params: params["recognize"]["steps"].update(frequency_ban=ban)) == (
        recognitions | {"register", "settings"}
    )
    assert changed_stages(repo, env, lambda params: params["index"].update(exact_below=5)) == {
        f"index@{name}" for name in RETRIEVAL_VARIANTS
    } | {"ensemble_index@both", "settings"}


def test_fewer_verified_neighbours_rerun_recognition_from_the_features_it_kept(project):
    repo, env = project.repo, project.env
    recognitions = {f"recognize@{name}" for name in RETRIEVAL_VARIANTS} | {"ensemble_recognize@both"}
    assert {int(count) for count in re.findall(r"(\d+) photos' features extracted", project.first)} - {0}
    path, original = repo / "params.yaml", (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["recognize"]["steps"]["verify"]["neighbours"] = 1
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        fewer = run(DVC + ["repro"], repo, env)
    finally:
        path.write_text(original)
    assert stages_run(fewer) >= recognitions and not stages_run(fewer) & {f"embed@{n}" for n in RETRIEVAL_VARIANTS}
    extracted = re.findall(r"(\d+) photos' features extracted", fewer)
    assert extracted and set(extracted) == {"0"}
    run(DVC + ["repro"], repo, env)
    assert project.status_says_up_to_date()


def test_gallery_photos_name_a_new_landmark_without_retraining(project):
    gallery_photos_name_a_new_landmark(project.repo, project.env, DVC, project.folder / "query.jpg")


def test_a_clone_pulls_the_pipeline_from_a_remote_and_has_nothing_to_rerun(project):
    repo, env, folder = project.repo, project.env, project.folder
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "lock"], repo, env)
    run(DVC + ["remote", "add", "-d", "team", str(folder / "remote")], repo, env)
    run(["git", "commit", "-qam", "team remote"], repo, env)
    run(DVC + ["push"], repo, env)
    clone = folder / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], folder, env)
    run(DVC + ["pull"], clone, env)
    assert "Data and pipelines are up to date" in run(DVC + ["status"], clone, env)
    assert (clone / "gallery_photos/train.csv").read_bytes() == (repo / "gallery_photos/train.csv").read_bytes()
    assert stages_run(run(DVC + ["repro"], clone, env)) == set()
    assert (clone / "submission.csv").read_bytes() == (repo / "submission.csv").read_bytes()
    assert (clone / "reports/submission.json").read_bytes() == (repo / "reports/submission.json").read_bytes()


def test_an_experiment_reruns_the_one_variant_it_changes_and_no_output_holds_the_secret(project):
    repo, env = project.repo, project.env
    # `++` adds the key to a variant that inherits it (DVC's -S is Hydra's override syntax); that variant alone reruns.
    experiment = run(DVC + ["exp", "run", "-S", "++variants.xception.lr=0.0001"], repo, env)
    assert stages_run(experiment) == {"settings", "train@xception", "evaluate@xception", "saliency", "report"}
    assert SECRET not in experiment
    written = [path for path in repo.rglob("*") if path.is_file() and ".git" not in path.parts]
    assert written and not [path for path in written if SECRET.encode() in path.read_bytes()]
    with sqlite3.connect(repo / "mlflow.db") as db:
        tagged = db.execute("select count(*) from tags where key = 'dvc_experiment'").fetchone()
    assert tagged == (1,)


@pytest.mark.timeout(600)
def test_seeds_run_the_pipeline_per_seed_and_put_the_workspace_back(project):
    # `landmark seeds 0 1` runs the pipeline per train.seed as DVC experiments, keeps each run's figures and puts
    # the workspace back; seed 0 is the committed run (nothing reruns), seed 1 retrains.
    repo, env = project.repo, project.env
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], repo, env)
    run(DVC + ["checkout", "--quiet"], repo, env)
    committed = (repo / "submission.csv").read_bytes()
    seeded = run([sys.executable, "-m", "landmark.cli", "seeds", "0", "1"], repo, env)
    assert "train@resnet50" in stages_run(seeded) and "filter" not in stages_run(seeded)
    assert "reports/seeds/seeds.md: 2 runs kept (seeds 0, 1)" in seeded
    kept = repo / "reports/seeds"
    for seed in (0, 1):
        assert {path.stem for path in (kept / f"seed-{seed}/metrics").glob("*.json")} == set(E2E_VARIANTS)
        assert (kept / f"seed-{seed}/recognitions/recipe_resnet50/metrics.json").exists()
    assert json.loads((kept / "seed-0/metrics/xception.json").read_text()) == json.loads(
        (repo / "metrics/xception.json").read_text()
    )
    table = (kept / "seeds.md").read_text()
    assert "Seeds (train.seed): 0, 1." in table and re.search(
        r"\| resnet50 \| \d\.\d{3} ± \d\.\d{3} \(.*n=2\) \|", table
    )
    assert (repo / "submission.csv").read_bytes() == committed
    assert project.status_says_up_to_date()
    assert run(["git", "status", "--porcelain", "--", "params.yaml", "dvc.lock"], repo, env) == ""


@pytest.mark.timeout(1000)  # the parts' own deadline is 900 s
def test_queued_experiments_run_side_by_side_into_one_mlflow_store(project):
    queued_experiments_run_side_by_side(project.repo, project.env, DVC)
