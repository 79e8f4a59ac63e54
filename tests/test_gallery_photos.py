"""Photos only the gallery gets (data.gallery_photos): packed incrementally by the gallery_photos stage, and added
to the embed stage's gallery set, embedding only the photos it has not seen."""

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from landmark.data.gallery_photos import update_gallery_photos
from landmark.data.layout import image_path, read_labels
from landmark.data.shards import INDEX, image_reader
from landmark.errors import UserError
from landmark.files import write_csv
from tests.test_distributed import embed_command, embed_project
from tests.test_embedding_cache import SETS, run_embed
from tests.test_resume import environment


def photo_folder(folder, dataset, rows: dict) -> pd.DataFrame:
    """folder in the Kaggle layout: the photo of each train image of dataset named in rows (its id -> (new id,
    landmark)), under the new id and label. Returns its train.csv."""
    labels = pd.DataFrame([(new, landmark) for new, landmark in rows.values()], columns=["id", "landmark_id"])
    for old, (new, _) in rows.items():
        target = image_path(folder, "train", new)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image_path(dataset, "train", old), target)
    write_csv(folder / "train.csv", labels)
    return labels


def packed(out_dir) -> pd.DataFrame:
    return pd.read_csv(out_dir / "train" / INDEX, dtype={"id": str, "digest": str})


def test_a_run_packs_only_new_and_changed_photos_and_drops_removed_ones(tmp_path, tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    photos, out = tmp_path / "photos", tmp_path / "out"
    originals = train["id"].iloc[:4].tolist()
    photo_folder(photos, tiny_dataset, {old: (f"new{number:013d}", 900 + number) for number, old in
                                        enumerate(originals[:3])})  # fmt: skip
    first = update_gallery_photos(photos, out, 2**20, 10**8)
    assert (first.listed, first.packed, first.kept, first.removed, first.skipped) == (3, 3, 0, 0, 0)
    index = packed(out)
    assert index["landmark_id"].tolist() == [900, 901, 902]
    reader = image_reader(out, "train", index["id"])
    for position, image_id in enumerate(index["id"]):
        assert reader.read(position) == image_path(photos, "train", image_id).read_bytes()

    again = update_gallery_photos(photos, out, 2**20, 10**8)  # nothing changed: nothing packed, the same index
    assert (again.packed, again.kept) == (0, 3)
    pd.testing.assert_frame_equal(packed(out), index)

    # one photo added, one relabelled, one replaced by other bytes, one removed, one listed but missing, one broken
    labels = pd.read_csv(photos / "train.csv", dtype={"id": str})
    shutil.copyfile(image_path(tiny_dataset, "train", originals[3]), image_path(photos, "train", "new0000000000002"))
    os.utime(image_path(photos, "train", "new0000000000002"), ns=(1, 1))
    image_path(photos, "train", "new0000000000000").unlink()
    broken = image_path(photos, "train", "bad0000000000000")
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("not a photo")
    photo_folder(photos / "more", tiny_dataset, {originals[0]: ("add0000000000000", 7)})
    shutil.copytree(photos / "more" / "train", photos / "train", dirs_exist_ok=True)
    labels = pd.concat([labels.iloc[1:], pd.DataFrame({"id": ["add0000000000000", "bad0000000000000",
                        "gone000000000000"], "landmark_id": [7, 8, 9]})])  # fmt: skip
    labels.loc[labels["id"] == "new0000000000001", "landmark_id"] = 42
    write_csv(photos / "train.csv", labels)
    third = update_gallery_photos(photos, out, 2**20, 10**8)
    assert (third.listed, third.packed, third.kept, third.removed, third.skipped) == (5, 2, 1, 1, 2)
    index = packed(out)
    assert dict(zip(index["id"], index["landmark_id"], strict=True)) == {
        "add0000000000000": 7,
        "new0000000000001": 42,
        "new0000000000002": 902,
    }
    skipped = pd.read_csv(out / "skipped.csv", dtype=str)
    assert dict(zip(skipped["id"], skipped["reason"], strict=True)) == {"bad0000000000000": "not an image",
                                                            "gone000000000000": "missing"}  # fmt: skip
    reader = image_reader(out, "train", index["id"])
    for position, image_id in enumerate(index["id"]):
        assert reader.read(position) == image_path(photos, "train", image_id).read_bytes()


def test_shards_mostly_of_removed_photos_are_packed_again(tmp_path, tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    photos, out = tmp_path / "photos", tmp_path / "out"
    every = {old: (f"p{number:015d}", 1) for number, old in enumerate(train["id"].iloc[:12])}
    labels = photo_folder(photos, tiny_dataset, every)
    update_gallery_photos(photos, out, 2**20, 10**8)  # one shard of 12
    write_csv(photos / "train.csv", labels.iloc[:2])
    done = update_gallery_photos(photos, out, 1, 10**8)  # now a shard per photo
    assert done.repacked and done.removed == 10
    assert sorted(path.name for path in (out / "train").iterdir()) == ["index.csv", "shard-000000.tar",
                                                                       "shard-000001.tar"]  # fmt: skip
    index = packed(out)
    reader = image_reader(out, "train", index["id"])
    assert [reader.read(position) for position in range(2)] == [
        image_path(photos, "train", image_id).read_bytes() for image_id in index["id"]
    ]


def test_a_bad_listing_is_one_line_naming_it(tmp_path):
    photos = tmp_path / "photos"
    with pytest.raises(UserError, match=r"photos/train.csv is missing; the folder needs a train.csv"):
        update_gallery_photos(photos, tmp_path / "out", 2**20, 10**8)
    photos.mkdir()
    (photos / "train.csv").write_text("id,landmark_id\na,1\nb,-1\n")
    with pytest.raises(UserError, match=r"train.csv:3: landmark_id must be 0 or more"):
        update_gallery_photos(photos, tmp_path / "out", 2**20, 10**8)


def test_the_embed_stage_adds_the_gallery_photos_embedding_only_the_new_ones(tmp_path, tiny_dataset):
    train = read_labels(tiny_dataset / "train.csv")
    photos = tmp_path / "photos"
    photo_folder(photos, tiny_dataset, {train["id"].iat[0]: ("g000000000000000", 77)})
    project = embed_project(tmp_path / "project", tiny_dataset, 1, photos)
    assert run_embed(project) == sum(len(pd.read_csv(project / f"out/{name}.csv")) for name in SETS)  # all
    gallery = pd.read_csv(project / "out/gallery.csv", dtype={"id": str})
    assert gallery["id"].iat[-1] == "g000000000000000" and gallery["landmark_id"].iat[-1] == 77
    before = np.load(project / "out/gallery.npy")

    photo_folder(photos / "more", tiny_dataset, {train["id"].iat[1]: ("g000000000000001", 78),
                                                 train["id"].iat[2]: ("g000000000000002", 78)})  # fmt: skip
    for added in ("g000000000000001", "g000000000000002"):  # photos no train image has the bytes of
        path = image_path(photos / "more", "train", added)
        Image.open(path).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(path, "JPEG")
    shutil.copytree(photos / "more" / "train", photos / "train", dirs_exist_ok=True)
    write_csv(photos / "train.csv", pd.DataFrame({"id": [f"g00000000000000{n}" for n in range(3)],
                                                  "landmark_id": [77, 78, 78]}))  # fmt: skip
    update_gallery_photos(photos, project / "gallery_photos", 2**20, 10**8)
    assert run_embed(project) == 2
    gallery = pd.read_csv(project / "out/gallery.csv", dtype={"id": str})
    assert gallery["landmark_id"].iloc[-3:].tolist() == [77, 78, 78]
    np.testing.assert_array_equal(np.load(project / "out/gallery.npy")[: len(before)], before)

    # a photo whose id is a train image's: one line, no traceback
    write_csv(photos / "train.csv", pd.DataFrame({"id": [train["id"].iat[3]], "landmark_id": [1]}))
    photo_folder(photos, tiny_dataset, {train["id"].iat[3]: (train["id"].iat[3], 1)})
    update_gallery_photos(photos, project / "gallery_photos", 2**20, 10**8)
    command = embed_command("model.pt", "out")
    result = subprocess.run(command, cwd=project, env=environment(project), capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"error: data.gallery_photos: photo id {train['id'].iat[3]} is a train image's id too (1 such); give the "
        "gallery photo another id in its train.csv and file name\n"
    )
