"""The rehearsal source: GLDv2's class sizes at a fraction, its mirror, and the real download code fetching from it."""

import hashlib
import http.client

import pandas as pd
import pytest

from landmark.data import kaggle, local, rehearsal
from landmark.errors import UserError
from landmark.settings import Rehearsal, parse_params
from tests.params_file import PARAMS

SETTINGS = Rehearsal.model_validate(PARAMS["data"]["rehearsal"])  # the project's: 1/20,000


def at(fraction) -> Rehearsal:
    return SETTINGS.model_copy(update={"fraction": fraction})


def test_at_full_size_the_curve_meets_every_published_count():
    sizes = rehearsal.gldv2_sizes(SETTINGS.gldv2)
    gldv2 = SETTINGS.gldv2
    assert len(sizes) == gldv2.classes and round(sizes[0]) == gldv2.largest_class
    assert round(sizes[-1]) == gldv2.smallest_class and (sizes[:-1] >= sizes[1:]).all()
    assert (sizes >= gldv2.filter_threshold).sum() == gldv2.filter_classes  # the paper's filter keeps 6,512
    assert sizes[: gldv2.filter_classes].sum() == pytest.approx(gldv2.filter_images, rel=1e-6)
    assert sizes.sum() == pytest.approx(gldv2.images, rel=1e-6)


@pytest.mark.parametrize("fraction", [1 / 20_000, 1 / 2_000, 1 / 400, 1 / 40, 1 / 20])
def test_a_rehearsal_keeps_the_share_of_classes_the_filter_keeps(fraction):
    """Within one class (the tolerance of a sample of n classes, 1/n), the paper's filter keeps the share of
    classes it keeps of GLDv2, 6,512 of 203,094; the images add up to GLDv2's share of the classes kept (n of
    203,094), within 1% and the rounding of each class's size."""
    gldv2 = SETTINGS.gldv2
    sizes = rehearsal.class_sizes(at(fraction))
    assert len(sizes) == round(gldv2.classes * fraction)
    kept = (sizes >= gldv2.filter_threshold).mean()
    assert abs(kept - gldv2.filter_classes / gldv2.classes) <= 1 / len(sizes)
    expected = gldv2.images * len(sizes) / gldv2.classes
    assert abs(sizes.sum() - expected) <= 0.01 * expected + len(sizes) / 2
    kept_images = sizes[sizes >= gldv2.filter_threshold].sum() / sizes.sum()
    if len(sizes) >= 1000:  # the share of images the filter keeps (29%), once a slice of ranks is narrow
        assert kept_images == pytest.approx(gldv2.filter_images / gldv2.images, abs=0.01)


def test_the_plan_has_the_test_sets_share_of_landmarks_and_a_pool():
    planned = rehearsal.plan(at(1 / 400))
    test, pool = planned["test"], planned["pool"]
    assert len(test) == round(117_577 / 400) and len(pool) == round(117_577 / 400)
    assert (test["label"] >= 0).sum() == round(len(test) * 0.02)
    ids = pd.concat([planned["train"]["id"], test["id"], pool["id"]])
    assert ids.is_unique and ids.str.fullmatch(r"[0-9a-f]{16}").all()
    assert set(test["usage"]) == {"Public", "Private", "Ignored"}
    assert len(planned["train"]) == rehearsal.class_sizes(at(1 / 400)).sum()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rehearsal") / "mirror"
    return folder, rehearsal.build_mirror(folder, SETTINGS, "landmark-recognition-2019")


def test_the_mirror_is_built_once_and_the_same_from_the_same_settings(mirror, tmp_path):
    folder, manifest = mirror
    assert (manifest["train_images"], manifest["test_images"], manifest["train_shards"]) == (203, 6, 1)
    shard = folder / "train/images_000.tar"
    built = shard.stat().st_mtime_ns
    assert rehearsal.build_mirror(folder, SETTINGS, "landmark-recognition-2019") == manifest
    assert shard.stat().st_mtime_ns == built
    again = tmp_path / "again"
    rehearsal.build_mirror(again, SETTINGS, "landmark-recognition-2019")
    for path in ("train/images_000.tar", "test/images_000.tar", "competitions/landmark-recognition-2019.zip"):
        assert (again / path).read_bytes() == (folder / path).read_bytes()
    md5 = (folder / "md5sum/train/md5.images_000.txt").read_text().split()
    assert md5 == [hashlib.md5(shard.read_bytes()).hexdigest(), "images_000.tar"]


class Recording(rehearsal.RangeHandler):
    """Records each request; spoils the first transfer of each path in `spoil` as its mode says: corrupt (one byte
    changed, full length) or cut (half the bytes, then the connection closes)."""

    requests, spoil = [], {}

    def send_head(self):
        Recording.requests.append((self.path, self.headers.get("Range")))
        handle = super().send_head()
        mode = Recording.spoil.pop(self.path, None)
        if handle is None or mode is None:
            return handle
        data = handle.read()
        handle.close()
        if mode == "corrupt":
            self.wfile.write(bytes([data[0] ^ 0xFF]) + data[1:])
        else:
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        return None


@pytest.fixture
def recording():
    Recording.requests.clear()
    Recording.spoil.clear()
    return Recording


def test_a_shard_that_fails_its_md5_is_fetched_again(mirror, tmp_path, recording):
    folder, _ = mirror
    recording.spoil["/train/images_000.tar"] = "corrupt"
    with rehearsal.serve(folder, recording) as url:
        shard = kaggle.fetch_verified_shard(url, "train", 0, tmp_path)
    assert shard.read_bytes() == (folder / "train/images_000.tar").read_bytes()
    assert [path for path, _ in recording.requests] == [
        "/md5sum/train/md5.images_000.txt",
        "/train/images_000.tar",
        "/train/images_000.tar",
    ]


def test_a_shard_cut_off_mid_transfer_resumes_where_it_stopped(mirror, tmp_path, recording):
    folder, _ = mirror
    size = (folder / "train/images_000.tar").stat().st_size
    recording.spoil["/train/images_000.tar"] = "cut"
    with rehearsal.serve(folder, recording) as url:
        shard = kaggle.fetch_verified_shard(url, "train", 0, tmp_path)
    assert shard.read_bytes() == (folder / "train/images_000.tar").read_bytes()
    assert recording.requests[1:] == [("/train/images_000.tar", None), ("/train/images_000.tar", f"bytes={size // 2}-")]


def test_the_server_answers_a_range_past_the_end_with_416(mirror):
    folder, _ = mirror
    size = (folder / "test/images_000.tar").stat().st_size
    with rehearsal.serve(folder) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"))
        connection.request("GET", "/test/images_000.tar", headers={"Range": f"bytes={size}-"})
        assert connection.getresponse().status == 416
        connection.close()


def test_download_lays_out_the_kaggle_layout_and_its_pool_is_packed(mirror, tmp_path):
    summary, pool = rehearsal.download(tmp_path / "raw", SETTINGS, tmp_path / "cache", 2**20)
    assert summary["train_images"] == 203 and summary["test_images"] == 6 and summary["test_landmarks"] == 1
    train = pd.read_csv(tmp_path / "raw/train.csv", dtype=str)
    assert list(train.columns) == ["id", "landmark_id"] and train["landmark_id"].nunique() == 10
    solution = pd.read_csv(tmp_path / "raw/solution.csv", dtype=str, keep_default_na=False)
    assert (solution["landmarks"] != "").sum() == 1
    assert local.add_nonlandmarks([pool], tmp_path / "raw", 2**20) == 6
    assert sorted(path.name for path in (tmp_path / "raw/nonlandmark").iterdir()) == ["index.csv", "shard-000000.tar"]


def test_the_settings_say_what_a_rehearsal_needs():
    rehearsal_params = PARAMS["data"] | {"source": "rehearsal"}
    settings = parse_params(PARAMS | {"data": rehearsal_params})
    assert settings.data.rehearsal.scaled(117_577) == 6
    zero = rehearsal_params | {"rehearsal": PARAMS["data"]["rehearsal"] | {"fraction": 0}}
    with pytest.raises(UserError, match=r"params.yaml data.rehearsal.fraction: 0 must be above 0 and at most 1"):
        parse_params(PARAMS | {"data": zero})
