import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from landmark.data.layout import image_path
from landmark.data.local import link_tree
from landmark.data.shards import image_reader
from tests.params_file import PARAMS

ROOT = Path(__file__).parents[1]
UNREACHABLE_KAGGLE = {
    "competition": "landmark-recognition-2019",
    "shard_base_url": "http://127.0.0.1:9",
    "train_shards": 1,
    "test_shards": 1,
    "solution_url": "",
}


def run_download(tmp_path, data_params, env=None, variants=None):
    """The download stage in tmp_path with the project's params.yaml, the keys of data_params replaced in its data
    section (and the variants replaced)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] |= data_params
    params["variants"] = variants or params["variants"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", "stages.download", "data/raw"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)} | (env or {}),
        capture_output=True,
        text=True,
    )


def test_local_folder_is_linked_in_the_kaggle_layout(tmp_path, tiny_dataset):
    summary = link_tree(tiny_dataset, tmp_path / "raw")
    copied = sorted(path.relative_to(tmp_path / "raw") for path in (tmp_path / "raw").rglob("*") if path.is_file())
    original = sorted(path.relative_to(tiny_dataset) for path in tiny_dataset.rglob("*") if path.is_file())
    assert copied == original and summary == {"files": len(original)}
    # linked, not copied: each is the source's file itself (on one file system, as here; across two, a copy)
    assert (tmp_path / "raw").stat().st_dev == tiny_dataset.stat().st_dev
    assert all((tmp_path / "raw" / path).samefile(tiny_dataset / path) for path in original)


def test_a_folder_of_non_landmark_photos_joins_the_pool(tmp_path, tiny_dataset):
    photos = tmp_path / "street"
    (photos / "night").mkdir(parents=True)
    Image.new("RGB", (9, 7), (10, 20, 30)).save(photos / "night" / "a.png")
    Image.new("RGB", (9, 7), (90, 20, 30)).save(photos / "b.JPG")
    (photos / "notes.txt").write_text("not a photo")
    data = {"source": "local", "local": {"path": str(tiny_dataset)}, "nonlandmarks": str(photos)}
    result = run_download(tmp_path, data)
    assert result.returncode == 0, result.stderr
    assert "2 added_nonlandmarks" in result.stdout
    pool = pd.read_csv(tmp_path / "data/raw/nonlandmark.csv", dtype=str, keep_default_na=False)
    added = pool[pool["source"] != ""]
    assert len(pool) == len(added) + len(pd.read_csv(tiny_dataset / "nonlandmark.csv"))
    assert sorted(added["source"]) == ["b.JPG", "night/a.png"]
    for image_id, source in zip(added["id"], added["source"], strict=True):
        copied = image_path(tmp_path / "data/raw", "nonlandmark", image_id).read_bytes()
        assert copied == (photos / source).read_bytes()
    missing = run_download(tmp_path, data | {"nonlandmarks": str(tmp_path / "nowhere")})
    assert missing.returncode == 1
    assert (
        missing.stderr == f"error: data.nonlandmarks: {tmp_path / 'nowhere'} is not a folder; "
        "point it at a folder of non-landmark photos\n"
    )


def test_a_pool_added_where_the_data_has_none_is_packed_into_shards(tmp_path, tiny_dataset):
    """The kaggle and rehearsal sources bring no pool: a folder of photos added there is packed, not linked photo by
    photo, so DVC hashes a few shards however many photos it holds."""
    mine = tmp_path / "mine"
    shutil.copytree(tiny_dataset, mine, ignore=shutil.ignore_patterns("nonlandmark*"))
    photos = tmp_path / "street"
    photos.mkdir()
    for number in range(3):
        Image.new("RGB", (9, 7), (10 * number, 20, 30)).save(photos / f"{number}.jpg")
    result = run_download(tmp_path, {"source": "local", "local": {"path": str(mine)}, "nonlandmarks": str(photos)})
    assert result.returncode == 0, result.stderr
    pool = pd.read_csv(tmp_path / "data/raw/nonlandmark.csv", dtype=str)
    assert sorted(pool["source"]) == ["0.jpg", "1.jpg", "2.jpg"]
    assert sorted(path.name for path in (tmp_path / "data/raw/nonlandmark").iterdir()) == [
        "index.csv",
        "shard-000000.tar",
    ]
    reader = image_reader(tmp_path / "data/raw", "nonlandmark", pool["id"])
    assert [reader.read(row) for row in range(3)] == [(photos / name).read_bytes() for name in pool["source"]]


def test_local_folder_missing_parts_is_one_line(tmp_path):
    (tmp_path / "gld").mkdir()
    data = {"source": "local", "local": {"path": str(tmp_path / "gld")}, "nonlandmarks": str(tmp_path)}
    result = run_download(tmp_path, data)
    assert result.returncode == 1
    assert (
        result.stderr == f"error: data.local.path: {tmp_path / 'gld' / 'train.csv'} is missing; "
        "point it at a folder in the Kaggle layout\n"
    )
    assert not (tmp_path / "data/raw").exists() and not (tmp_path / "data/raw.partial").exists()


def test_kaggle_without_credentials_leaves_nothing_behind(tmp_path):
    data = {"source": "kaggle", "kaggle": UNREACHABLE_KAGGLE, "nonlandmarks": str(tmp_path)}
    result = run_download(tmp_path, data, env={"KAGGLE_CONFIG_DIR": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no Kaggle credentials found: set KAGGLE_API_TOKEN")
    assert not (tmp_path / "data/raw").exists() and not (tmp_path / "data/raw.partial").exists()


class KaggleSite(http.server.BaseHTTPRequestHandler):
    """Kaggle's API as the real client meets it, on the endpoint its LOCALHOST environment calls (http://localhost):
    the token check answers `token` (200: a good token), the competition download answers `download`."""

    token, download, asked = 200, 200, []

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        KaggleSite.asked.append(self.path.rsplit("/", 1)[-1])
        status = self.token if self.path.endswith("/IntrospectToken") else self.download
        body = {"active": True, "username": "tester"} if status == 200 else {"code": status, "message": "no"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kaggle_site():
    """The site on port 80, where the client's LOCALHOST environment looks (it has no setting for the port)."""
    try:
        server = http.server.ThreadingHTTPServer(("localhost", 80), KaggleSite)
    except OSError as error:
        pytest.skip(f"cannot serve Kaggle's local endpoint on port 80 here ({error})")
    KaggleSite.token, KaggleSite.download, KaggleSite.asked = 200, 200, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield KaggleSite
    server.shutdown()
    server.server_close()


# the variants embed.variants names: the stage builds each before it downloads, and the others add only time
EMBEDDED_ONLY = {name: own for name, own in PARAMS["variants"].items() if name in PARAMS["embed"]["variants"]}
LOCAL_KAGGLE = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "KAGGLE_API_TOKEN": "KGAT_local_0123456789"}
RULES = "https://www.kaggle.com/competitions/landmark-recognition-2019/rules"


@pytest.mark.parametrize(
    "token,download,said",
    [
        (403, 200, "no Kaggle credentials found: set KAGGLE_API_TOKEN"),  # a token Kaggle does not know
        (401, 200, "Kaggle rejected the credentials (HTTP 401): set KAGGLE_API_TOKEN"),
        (200, 401, "Kaggle rejected the credentials (HTTP 401): set KAGGLE_API_TOKEN"),
        (200, 403, f"Kaggle refused landmark-recognition-2019 (HTTP 403): accept the rules at {RULES}, then rerun"),
        (200, 404, "Kaggle has no competition 'landmark-recognition-2019' (HTTP 404): check data.kaggle.competition"),
        (200, 500, "Kaggle failed the download of landmark-recognition-2019 (HTTP 500); rerun later"),
        (500, 200, "Kaggle failed the credentials check (HTTP 500); rerun later"),
    ],
    ids=["unknown-token", "token-rejected", "download-rejected", "rules", "no-competition", "server-error",
         "check-failed"],
)  # fmt: skip
def test_kaggle_refusals_through_the_real_client_are_one_line_and_leave_no_data(
    tmp_path, kaggle_site, token, download, said
):
    """The download stage, the real Kaggle client and a local Kaggle that refuses: each refusal is one line that
    says what to do, and no data/raw appears (README: "Bad input and faults")."""
    kaggle_site.token, kaggle_site.download = token, download
    data = {"source": "kaggle", "kaggle": UNREACHABLE_KAGGLE, "nonlandmarks": str(tmp_path)}
    result = run_download(tmp_path, data, env=LOCAL_KAGGLE, variants=EMBEDDED_ONLY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {said}") and result.stderr.count("\n") == 1, result.stderr
    assert ("DownloadDataFiles" in kaggle_site.asked) == (token == 200)  # the client asked this server
    assert not (tmp_path / "data/raw").exists()
    # nothing half-downloaded: at most the note of which settings data/raw.partial is being unpacked for
    kept = [path.relative_to(tmp_path).as_posix() for path in (tmp_path / "data").rglob("*") if path.is_file()]
    assert set(kept) <= {"data/raw.partial/.unpacked/settings.json"}


def test_no_network_to_kaggle_is_one_line(tmp_path):
    data = {"source": "kaggle", "kaggle": UNREACHABLE_KAGGLE, "nonlandmarks": str(tmp_path)}
    result = run_download(tmp_path, data, env=LOCAL_KAGGLE, variants=EMBEDDED_ONLY)  # nothing listens there
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == ("error: cannot reach Kaggle (ConnectionError); check the network connection, then rerun\n")
    assert not (tmp_path / "data/raw").exists()


def test_a_kaggle_download_checks_the_train_params_first(tmp_path):
    variants = yaml.safe_load((ROOT / "params.yaml").read_text())["variants"]
    variants["xception_cbp"]["pooling"] = {"name": "cbp", "size": 8192}  # the option is called dim
    data = {"source": "kaggle", "kaggle": UNREACHABLE_KAGGLE, "nonlandmarks": str(tmp_path)}
    result = run_download(tmp_path, data, variants=variants)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: variants.xception_cbp.pooling: ")
    assert "'size'" in result.stderr and "Kaggle credentials" not in result.stderr
    assert not (tmp_path / "data/raw").exists() and not (tmp_path / "data/raw.partial").exists()


def test_without_a_pool_the_suppression_steps_stop_the_first_stage_in_one_line(tmp_path, tiny_dataset):
    local = {"source": "local", "local": {"path": str(tmp_path / "mine")}, "nonlandmarks": ""}
    (tmp_path / "mine").mkdir()
    for name in ("train.csv", "test.csv", "train", "test"):  # a user's folder of photos: no non-landmark pool
        copy = shutil.copytree if (tiny_dataset / name).is_dir() else shutil.copy
        copy(tiny_dataset / name, tmp_path / "mine" / name)
    result = run_download(tmp_path, local)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: params.yaml data.nonlandmarks: no non-landmark pool is given, which knn+query_penalty in "
        "recognize.methods needs for query_penalty; point data.nonlandmarks at a folder of photos without "
        "landmarks, or take query_penalty out of recognize.methods\n"
    )
    assert not (tmp_path / "data/raw").exists() and not (tmp_path / "data/raw.partial").exists()
    for name in ("nonlandmark.csv", "nonlandmark"):  # a folder that brings a pool of its own
        copy = shutil.copytree if (tiny_dataset / name).is_dir() else shutil.copy
        copy(tiny_dataset / name, tmp_path / "mine" / name)
    assert run_download(tmp_path, local).returncode == 0


def test_unknown_source_names_the_key(tmp_path):
    result = run_download(tmp_path, {"source": "s3"})
    assert result.returncode == 1
    assert result.stderr == "error: params.yaml data.source: 's3' is not synthetic, kaggle, local or rehearsal\n"
