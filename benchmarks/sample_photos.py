"""A small folder of real photos in the Kaggle layout, for trying the photos profile where no landmark photos are
at hand: scikit-learn's and scikit-image's sample photos (`pip install scikit-image`; scikit-learn comes with the
test extra). Each "landmark" is one photo seen through random crops, flips and scales at 320–640 px (the
motorcycle through its two real viewpoints); the test set adds photos of other things, and a second folder of
further photos is the non-landmark pool. A check of the mechanics at a photo's resolution, not of accuracy: a crop
of a photo is far easier to name than another photo of the same place.

Usage: python benchmarks/sample_photos.py OUT_DIR [--train N] [--test N] [--others N] [--pool N] [--viewpoints]
    (writes OUT_DIR/gld, in the Kaggle layout, and OUT_DIR/street)
The defaults make about 100 photos; the issue's held-back folder's size, about 2,000 (583 train photos, 815 test
photos of which 570 show no landmark, 646 non-landmarks), is --train 84 --test 35 --others 570 --pool 646. With
--viewpoints the test photos of a landmark show another part of it than its train photos, so that the GAP is not
1 whatever the settings (checking which settings pay). Then:
    dvc exp run $(landmark profile profiles/photos.yaml) -S data.local.path=OUT_DIR/gld \\
        -S data.nonlandmarks=OUT_DIR/street
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import skimage
import sklearn.datasets
from PIL import Image, ImageEnhance

from landmark.data.layout import image_path

SKIMAGE, SKLEARN = Path(skimage.__file__).parent / "data", Path(sklearn.datasets.__file__).parent / "images"
LANDMARKS = {
    101: [SKLEARN / "china.jpg"],
    102: [SKLEARN / "flower.jpg"],
    103: [SKIMAGE / "rocket.jpg"],
    104: [SKIMAGE / "astronaut.png"],
    105: [SKIMAGE / "chelsea.png"],
    106: [SKIMAGE / "coffee.png"],
    107: [SKIMAGE / "motorcycle_left.png", SKIMAGE / "motorcycle_right.png"],
}
TEST_OTHERS = ["camera.png", "moon.png", "coins.png", "hubble_deep_field.jpg", "brick.png", "grass.png"]
POOL = ["gravel.png", "page.png", "text.png", "retina.jpg", "horse.png", "color.png"]


def view(path, rng, part=(0.0, 1.0), hard=False) -> Image.Image:
    """A random crop (55–90% of each side) of the part of the photo between those shares of its width, maybe
    flipped, scaled to 320–640 px wide; hard: a smaller crop (40–80%), turned by up to 10° and lit 0.6–1.4×."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    image = image.crop((int(width * part[0]), 0, int(width * part[1]), height))
    width, height = image.size
    share = rng.uniform(0.4, 0.8) if hard else rng.uniform(0.55, 0.9)
    crop_width, crop_height = int(width * share), int(height * share)
    left, top = rng.integers(0, width - crop_width + 1), rng.integers(0, height - crop_height + 1)
    crop = image.crop((left, top, left + crop_width, top + crop_height))
    if rng.uniform() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    if hard:
        crop = crop.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, expand=False)
        crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.6, 1.4))
    side = int(rng.integers(320, 640))
    return crop.resize((side, int(side * crop_height / crop_width)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train", type=int, default=8, help="train photos of each landmark")
    parser.add_argument("--test", type=int, default=2, help="test photos of each landmark")
    parser.add_argument("--others", type=int, default=len(TEST_OTHERS), help="test photos without a landmark")
    parser.add_argument("--pool", type=int, default=2 * len(POOL), help="non-landmark photos")
    parser.add_argument(
        "--viewpoints",
        action="store_true",
        help="harder: train photos of a landmark from the left 60%% of its photo, test ones from the right 60%%, "
        "each a smaller crop, turned and lit differently (a crop of the same scene is otherwise too easy to name)",
    )
    args = parser.parse_args()
    out_dir = args.out_dir
    gld, street = out_dir / "gld", out_dir / "street"
    for folder in (gld, street):
        shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)

    def save(image, split) -> str:
        image_id = f"{rng.integers(0, 2**63):016x}"
        path = image_path(gld, split, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "JPEG", quality=90)
        return image_id

    train, test, truth = [], [], []
    for label, paths in LANDMARKS.items():
        seen, unseen = ((0.0, 0.6), (0.4, 1.0)) if args.viewpoints else ((0.0, 1.0), (0.0, 1.0))
        for n in range(args.train):
            train.append((save(view(paths[n % len(paths)], rng, seen, args.viewpoints), "train"), label))
        for n in range(args.test):
            test.append(save(view(paths[n % len(paths)], rng, unseen, args.viewpoints), "test"))
            truth.append(str(label))
    for number in range(args.others):
        test.append(save(view(SKIMAGE / TEST_OTHERS[number % len(TEST_OTHERS)], rng), "test"))
        truth.append("")
    street.mkdir(parents=True)
    for number in range(args.pool):
        view(SKIMAGE / POOL[number % len(POOL)], rng).save(street / f"{number}.jpg", "JPEG", quality=90)
    pd.DataFrame(train, columns=["id", "landmark_id"]).to_csv(gld / "train.csv", index=False)
    pd.DataFrame({"id": test}).to_csv(gld / "test.csv", index=False)
    pd.DataFrame({"id": test, "landmarks": truth, "Usage": "Public"}).to_csv(gld / "solution.csv", index=False)
    print(
        f"sample photos: {len(train)} train photos of {len(LANDMARKS)} landmarks, {len(test)} test photos "
        f"({args.others} without a landmark) in {gld}; {args.pool} non-landmark photos in {street}"
    )


if __name__ == "__main__":
    main()
