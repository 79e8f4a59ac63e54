"""The real download path against a local HTTP server and the exceptions the real Kaggle client raises."""

import hashlib
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from landmark.data import kaggle
from landmark.data.kaggle import (
    download,
    extract_tar,
    extract_zip,
    fetch,
    fetch_shards,
    index_tar,
)
from landmark.data.shards import ShardReader
from landmark.errors import UserError
from landmark.settings import Kaggle

SHARD_NAMES = ["shard-000000.tar", "shard-000001.tar"]


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; honours Range; cuts the first transfer of each path in server.interrupt short."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.server.slow:
            for offset in range(start, len(body), 4096):
                self.wfile.write(body[offset : offset + 4096])
                self.wfile.flush()
                time.sleep(0.05)
            return
        if self.path in self.server.interrupt:
            self.server.interrupt.discard(self.path)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    server.files, server.requests, server.interrupt, server.slow = {}, [], set(), set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def make_tar(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish_shard(mirror, split, index, members, corrupt=False):
    body = make_tar(members)
    name = f"images_{index:03d}.tar"
    mirror.files[f"/{split}/{name}"] = body + (b"x" if corrupt else b"")
    mirror.files[f"/md5sum/{split}/md5.{name[:-4]}.txt"] = f"{hashlib.md5(body).hexdigest()}  {name}\n".encode()


def test_fetch_resumes_an_interrupted_transfer(tmp_path, mirror):
    body = bytes(range(256)) * 8192  # 2 MiB
    mirror.files["/big.bin"] = body
    mirror.interrupt.add("/big.bin")
    path = fetch(f"{mirror.url}/big.bin", tmp_path / "big.bin", retries=2)
    assert path.read_bytes() == body and not (tmp_path / "big.bin.part").exists()
    assert mirror.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(body) // 2}-")]


def test_fetch_gives_up_with_one_line(tmp_path, mirror):
    with pytest.raises(UserError, match=r"HTTP 404; check data.kaggle.shard_base_url"):
        fetch(f"{mirror.url}/nothing.tar", tmp_path / "nothing.tar")


def test_an_unreachable_mirror_is_one_line_after_its_retries(tmp_path):
    """README: an unreachable shard mirror stops with one line ("check the network"), after the retries, and
    leaves no file in place of the shard."""
    with socket.socket() as closed:  # a port nothing listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/images_000.tar"
    with pytest.raises(UserError, match=rf"^cannot download {re.escape(url)} \(.*refused.*\); check the network, "
                                        r"then rerun to resume$"):  # fmt: skip
        fetch(url, tmp_path / "images_000.tar", retries=1, timeout=5)
    assert list(tmp_path.iterdir()) == []


def read_images(folder, ids) -> list:
    """The bytes of the images of ids in a split laid out as shards with an index."""
    reader = ShardReader(folder, ids)
    return [reader.read(position) for position in range(len(ids))]


def test_shards_are_verified_laid_out_unpacked_and_not_fetched_twice(tmp_path, mirror):
    publish_shard(mirror, "train", 0, {"0/1/2/0123456789abcdef.jpg": b"jpeg-0", "0/1/2": b""})
    publish_shard(mirror, "train", 1, {"f/e/d/fedcba9876543210.jpg": b"jpeg-1"})
    index = fetch_shards(mirror.url, "train", 2, tmp_path / "cache", tmp_path / "out")
    assert index["id"].tolist() == ["0123456789abcdef", "fedcba9876543210"] and index["shard"].tolist() == [0, 1]
    assert read_images(tmp_path / "out", ["fedcba9876543210", "0123456789abcdef"]) == [b"jpeg-1", b"jpeg-0"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["index.csv", *SHARD_NAMES]
    cached = tmp_path / "cache/train/images_001.tar"
    assert (tmp_path / "out/shard-000001.tar").stat().st_ino == cached.stat().st_ino  # a link, not a copy
    assert cached.with_name("images_001.tar.verified").exists()
    served = len(mirror.requests)
    fetch_shards(mirror.url, "train", 2, tmp_path / "cache", tmp_path / "again")
    assert len(mirror.requests) == served and read_images(tmp_path / "again", ["0123456789abcdef"]) == [b"jpeg-0"]


def test_corrupt_shard_is_refused(tmp_path, mirror):
    publish_shard(mirror, "train", 0, {"0/1/2/0123456789abcdef.jpg": b"jpeg"}, corrupt=True)
    with pytest.raises(UserError, match="images_000.tar: md5 mismatch twice"):
        fetch_shards(mirror.url, "train", 1, tmp_path / "cache", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
    assert not (tmp_path / "cache/train/images_000.tar").exists()
    assert [path for path, _ in mirror.requests].count("/train/images_000.tar") == 2


def test_archives_cannot_write_outside_their_folder(tmp_path):
    evil_tar = tmp_path / "evil.tar"
    evil_tar.write_bytes(make_tar({"../escaped.jpg": b"x"}))
    with pytest.raises(UserError, match="refusing to extract"):
        extract_tar(evil_tar, tmp_path / "out")
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as bundle:
        info = tarfile.TarInfo("a/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bundle.addfile(info)
    with pytest.raises(UserError, match="refusing to extract"):
        extract_tar(linked, tmp_path / "out2")
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as bundle:
        bundle.writestr("../../escaped.csv", "x")
    with pytest.raises(UserError, match="points outside"):
        extract_zip(evil_zip, tmp_path / "out3", 2**20)
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path.parent / "escaped.csv").exists()


class FakeKaggleApi:
    """Stands in for KaggleApi.competition_download_files: raises what the real client raises, or writes a zip."""

    def __init__(self, error=None, files=None):
        self.error, self.files = error, files or {}

    def competition_download_files(self, competition, path=None, quiet=True):
        if self.error:
            raise self.error
        if Path(f"{path}/{competition}.zip").exists():  # the real client skips a file it has
            return
        with zipfile.ZipFile(f"{path}/{competition}.zip", "w") as bundle:
            for name, text in self.files.items():
                bundle.writestr(name, text)


def test_missing_credentials_with_the_real_client(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / ".kaggle"))
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        UserError,
        match="no Kaggle credentials found: set KAGGLE_API_TOKEN, or save your token to ~/.kaggle/access_token",
    ):
        kaggle.kaggle_api()


def test_download_2019_lays_out_the_kaggle_layout(tmp_path, mirror):
    publish_shard(mirror, "train", 0, {"0/1/2/0123456789abcdef.jpg": b"a", "4/5/6/456789abcdef0123.jpg": b"b"})
    publish_shard(mirror, "test", 0, {"a/b/c/abcdef0123456789.jpg": b"c"})
    mirror.files["/solution.csv"] = b"id,landmarks,Usage\nabcdef0123456789,7,Private\n"
    api = FakeKaggleApi(
        files={
            "train.csv": "id,url,landmark_id\n0123456789abcdef,http://x,7\n456789abcdef0123,http://y,8\nfffffffffffffff0,http://z,9\n",
            "test.csv": "id,url\nabcdef0123456789,http://t\n",
            "sample_submission.csv": "id,landmarks\nabcdef0123456789,\n",
        }
    )
    source = competition("landmark-recognition-2019", mirror.url, 1, 1, f"{mirror.url}/solution.csv")
    summary = download(tmp_path / "raw", source, tmp_path / "downloads", 2**20, api=api)
    assert summary == {"train_rows": 3, "train_images": 2, "test_images": 1}
    train = pd.read_csv(tmp_path / "raw/train.csv", dtype=str)
    assert train.to_dict("list") == {"id": ["0123456789abcdef", "456789abcdef0123"], "landmark_id": ["7", "8"]}
    assert read_images(tmp_path / "raw/test", ["abcdef0123456789"]) == [b"c"]
    assert (tmp_path / "raw/solution.csv").exists()


def competition(name, shard_base_url="http://127.0.0.1:9", train_shards=1, test_shards=1, solution_url=""):
    return Kaggle(
        competition=name, shard_base_url=shard_base_url, train_shards=train_shards, test_shards=test_shards,
        solution_url=solution_url,
    )  # fmt: skip


def test_download_2020_packs_the_images_of_its_zip_into_shards(tmp_path):
    train_images = {f"train/{i:x}/0/0/{i:016x}.jpg": os.urandom(300) for i in range(5)}  # 1 missing from the csv
    api = FakeKaggleApi(
        files={
            "train.csv": "id,landmark_id\n" + "".join(f"{i:016x},{i % 2}\n" for i in range(6)),
            **train_images,
            "test/a/b/c/abcdef0123456789.jpg": b"c",
            "sample_submission.csv": "id,landmarks\nabcdef0123456789,1 0.5\n",
        }
    )
    summary = download(tmp_path / "raw", competition("landmark-recognition-2020"), tmp_path / "downloads", 700, api=api)
    assert summary == {"train_rows": 6, "train_images": 5, "test_images": 1}
    assert (tmp_path / "raw/test.csv").read_text() == "id\nabcdef0123456789\n"
    assert (tmp_path / "downloads/landmark-recognition-2020/landmark-recognition-2020.zip").exists()
    # no loose image for DVC to hash: shards of about 700 bytes (3 and 2 images) with their index, as GLDv2's are
    raw = tmp_path / "raw"
    assert sorted(path.name for path in (raw / "train").iterdir()) == ["index.csv", *SHARD_NAMES]
    assert sorted(path.name for path in (raw / "test").iterdir()) == ["index.csv", "shard-000000.tar"]
    assert not list(raw.rglob("*.jpg"))
    ids = [f"{i:016x}" for i in range(5)]
    assert read_images(raw / "train", ids) == list(train_images.values())
    assert read_images(raw / "test", ["abcdef0123456789"]) == [b"c"]


def test_images_of_one_folder_in_two_zips_are_refused_before_any_is_unpacked(tmp_path):
    api = FakeKaggleApi(
        files={"train.csv": "id,landmark_id\n0123456789abcdef,7\n", "train/0/1/2/0123456789abcdef.jpg": b"a"}
    )
    cache = tmp_path / "downloads/landmark-recognition-2020"
    cache.mkdir(parents=True)
    with zipfile.ZipFile(cache / "landmark-recognition-2020-more.zip", "w") as bundle:
        bundle.writestr("train/4/5/6/456789abcdef0123.jpg", b"b")
    with pytest.raises(UserError, match=r"2020.zip: images of train/ are in landmark-recognition-2020-more.zip too"):
        download(tmp_path / "raw", competition("landmark-recognition-2020"), tmp_path / "downloads", 2**20, api=api)
    assert not (tmp_path / "raw/train").exists()


def test_kill_9_during_download_keeps_verified_shards_and_resumes(tmp_path, mirror):
    publish_shard(mirror, "train", 0, {"0/1/2/0123456789abcdef.jpg": b"first"})
    publish_shard(mirror, "train", 1, {"f/e/d/fedcba9876543210.jpg": os.urandom(400_000)})
    mirror.slow.add("/train/images_001.tar")  # ~5 s to serve: time to kill the downloader in the middle
    cache = tmp_path / "cache"
    downloader = subprocess.Popen(
        [
            sys.executable, "-c", "import sys; from landmark.data.kaggle import fetch_shards; "
            "fetch_shards(sys.argv[1], 'train', 2, sys.argv[2], sys.argv[3])", mirror.url,
            str(cache), str(tmp_path / "out"),
        ],
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    partial = cache / "train/images_001.tar.part"
    deadline = time.time() + 60
    while (not partial.exists() or partial.stat().st_size < 50_000) and time.time() < deadline:
        time.sleep(0.02)
    downloader.send_signal(signal.SIGKILL)
    downloader.wait()
    assert (cache / "train/images_000.tar.verified").exists() and partial.stat().st_size >= 50_000
    mirror.slow.clear()
    served = len(mirror.requests)
    fetch_shards(mirror.url, "train", 2, cache, tmp_path / "out")
    again = mirror.requests[served:]
    assert [path for path, _ in again] == ["/md5sum/train/md5.images_001.txt", "/train/images_001.tar"]
    assert again[1][1].startswith("bytes=") and int(again[1][1][6:-1]) >= 50_000
    assert len(read_images(tmp_path / "out", ["fedcba9876543210"])[0]) == 400_000


def test_an_interrupted_download_unpacks_only_what_it_had_not_unpacked(tmp_path, mirror, monkeypatch):
    publish_shard(mirror, "train", 0, {"0/1/2/0123456789abcdef.jpg": b"a"})
    publish_shard(mirror, "train", 1, {"4/5/6/456789abcdef0123.jpg": b"b"})
    publish_shard(mirror, "test", 0, {"a/b/c/abcdef0123456789.jpg": b"c"})
    api = FakeKaggleApi(
        files={
            "train.csv": "id,landmark_id\n0123456789abcdef,7\n456789abcdef0123,8\n",
            "test.csv": "id\nabcdef0123456789\n",
        }
    )
    unpacked, indexed = [], []

    def unpack(archive, dest, shard_bytes):
        unpacked.append(Path(archive).name)
        extract_zip(archive, dest, shard_bytes)

    def index(path):
        indexed.append(Path(path).name)
        if indexed == ["shard-000000.tar", "shard-000001.tar"]:
            raise KeyboardInterrupt  # laid in place, not yet indexed
        return index_tar(path)

    monkeypatch.setattr(kaggle, "extract_zip", unpack)
    monkeypatch.setattr(kaggle, "index_tar", index)
    source = competition("landmark-recognition-2019", mirror.url, train_shards=2)
    arguments = dict(cache_dir=tmp_path / "downloads", shard_bytes=2**20, api=api)
    with pytest.raises(KeyboardInterrupt):
        download(tmp_path / "raw", source, **arguments)
    unpacked.clear()
    served = len(mirror.requests)
    summary = download(tmp_path / "raw", source, **arguments)
    assert unpacked == []  # the competition's zip was unpacked before the kill
    assert [path for path, _ in mirror.requests[served:]] == ["/md5sum/test/md5.images_000.txt", "/test/images_000.tar"]
    assert summary == {"train_rows": 2, "train_images": 2, "test_images": 1}
    assert read_images(tmp_path / "raw/train", ["456789abcdef0123"]) == [b"b"]
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == ["test", "test.csv", "train", "train.csv"]
    assert sorted(path.name for path in (tmp_path / "raw/train").iterdir()) == ["index.csv", *SHARD_NAMES]

    # a folder left with other settings (or by anything else) is cleared and everything laid out afresh
    (tmp_path / "raw/stray.txt").write_text("left by something else")
    summary = download(tmp_path / "raw", source.model_copy(update={"train_shards": 1}), **arguments)
    assert unpacked == ["landmark-recognition-2019.zip"]
    assert summary == {"train_rows": 2, "train_images": 1, "test_images": 1}
    assert not (tmp_path / "raw/stray.txt").exists() and not (tmp_path / "raw/train/shard-000001.tar").exists()
