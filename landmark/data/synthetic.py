"""An embedded, offline stand-in for Google Landmarks v2, in the Kaggle layout.

Each class is a procedurally drawn building (a blueprint of walls, roofs, domes, towers and windows in its own
palette). Each photo of it varies as web photos of landmarks do: viewpoint (perspective warp), scale, crop,
lighting, occluders in front and clutter behind. Class sizes follow a power law, so some classes fall under the
filter threshold, and most test images show no landmark, only clutter and buildings that belong to no class.
A pool of such non-landmark photos, apart from the test set, is what recognition's non-landmark suppression
compares against (as the Kaggle winners used the images of an earlier test set). Everything is drawn from one
seed.
"""

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from tqdm import tqdm

from landmark.data.layout import image_path
from landmark.files import write_csv
from landmark.settings import Synthetic

SUPERSAMPLE = 2


def class_sizes(num_classes, max_images_per_class, min_images_per_class, tail_exponent):
    """Images per class, long-tailed: the k-th largest class has max · k^-tail_exponent images."""
    ranks = np.arange(1, num_classes + 1)
    sizes = np.round(max_images_per_class * ranks ** -float(tail_exponent)).astype(int)
    return np.maximum(sizes, min_images_per_class)


def _color(rng, saturation=(0.5, 1.0), value=(0.4, 1.0), hue=None):
    hue = rng.uniform() if hue is None else hue
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value))
    return int(r * 255), int(g * 255), int(b * 255)


def make_blueprint(rng):
    """A building as a list of (shape, box in unit coordinates, color) drawn back to front."""
    hue = rng.uniform()
    wall, roof, trim = (_color(rng, hue=(hue + offset) % 1.0) for offset in (0, rng.uniform(0.25, 0.75), 0.5))
    left, right = rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9)
    eaves = rng.uniform(0.35, 0.6)
    parts = [("rectangle", (left, eaves, right, 0.95), wall)]
    roof_kind = rng.choice(["triangle", "dome", "flat", "towers"])
    if roof_kind == "triangle":
        parts.append(
            ("polygon", (left - 0.05, eaves, (left + right) / 2, rng.uniform(0.1, 0.3), right + 0.05, eaves), roof)
        )
    elif roof_kind == "dome":
        width = (right - left) * rng.uniform(0.4, 0.8)
        centre = (left + right) / 2
        parts.append(("pieslice", (centre - width / 2, eaves - width / 2, centre + width / 2, eaves + width / 2), roof))
    elif roof_kind == "flat":
        parts.append(("rectangle", (left - 0.03, eaves - 0.05, right + 0.03, eaves), roof))
    for _ in range(rng.integers(0, 3) if roof_kind != "towers" else 2):
        x = rng.uniform(left, right - 0.1)
        parts.append(("rectangle", (x, rng.uniform(0.05, eaves - 0.05), x + rng.uniform(0.05, 0.12), 0.95), roof))
    rows, columns = rng.integers(1, 4), rng.integers(2, 6)
    window_shape = rng.choice(["rectangle", "ellipse", "pieslice"])
    for row in range(rows):
        for column in range(columns):
            x0 = left + (right - left) * (column + 0.25) / columns
            y0 = eaves + (0.95 - eaves) * (row + 0.2) / rows
            box = (x0, y0, x0 + (right - left) * 0.5 / columns, y0 + (0.95 - eaves) * 0.55 / rows)
            parts.append((window_shape, box, trim))
    return parts


def _draw_parts(draw, parts, size):
    for shape, box, color in parts:
        points = [coordinate * size for coordinate in box]
        if shape == "polygon":
            draw.polygon(points, fill=color)
        elif shape == "pieslice":
            draw.pieslice(points, 180, 360, fill=color)
        else:
            getattr(draw, shape)(points, fill=color)


def _background(rng, size):
    sky_top, sky_bottom = np.array(_color(rng, (0.0, 0.5), (0.5, 1.0))), np.array(_color(rng, (0.0, 0.4), (0.6, 1.0)))
    horizon = int(size * rng.uniform(0.55, 0.85))
    t = np.linspace(0, 1, size)[:, None, None]
    pixels = np.broadcast_to(sky_top * (1 - t) + sky_bottom * t, (size, size, 3)).copy()
    pixels[horizon:] = _color(rng, (0.1, 0.6), (0.2, 0.7))
    pixels += rng.normal(0, 6, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 12)):
        x, y = rng.uniform(0, size, 2)
        w, h = rng.uniform(0.03, 0.2, 2) * size
        draw.ellipse((x, y, x + w, y + h), fill=_color(rng))
    return image


def _warp(layer, rng, strength):
    """Perspective warp: move each corner by up to `strength` of the side, as a change of viewpoint does."""
    size = layer.size[0]
    jitter = rng.uniform(-strength, strength, 8) * size
    corners = np.array([0, 0, size, 0, size, size, 0, size], dtype=float) + jitter
    target = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=float)
    source = corners.reshape(4, 2)
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(rows), source.reshape(8))
    return layer.transform(layer.size, Image.PERSPECTIVE, tuple(coefficients), Image.BILINEAR)


def render(rng, image_size, blueprint=None):
    """One photo: clutter, optionally a building seen from a random viewpoint, occluders, lighting."""
    size = image_size * SUPERSAMPLE
    image = _background(rng, size)
    building = blueprint if blueprint is not None else (make_blueprint(rng) if rng.uniform() < 0.5 else None)
    if building is not None:
        layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        _draw_parts(ImageDraw.Draw(layer), building, size)
        layer = _warp(layer, rng, strength=0.15)
        scale = rng.uniform(0.55, 1.15) if blueprint is not None else rng.uniform(0.3, 0.8)
        scaled = max(8, int(size * scale))
        layer = layer.resize((scaled, scaled), Image.BILINEAR)
        offset = rng.uniform(-0.15, 0.15, 2) * size + (size - scaled) / 2
        image.paste(layer, tuple(int(value) for value in offset), layer)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 3)):
        x, y = rng.uniform(0, size, 2)
        w, h = rng.uniform(0.05, 0.25, 2) * size
        getattr(draw, rng.choice(["rectangle", "ellipse"]))((x, y, x + w, y + h), fill=_color(rng, value=(0.1, 0.8)))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.3))
    if rng.uniform() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return image.resize((image_size, image_size), Image.LANCZOS)


def _new_ids(rng, count, taken):
    ids = []
    while len(ids) < count:
        candidate = "".join(rng.choice(list("0123456789abcdef"), 16))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def generate(out_dir, settings: Synthetic):
    """Write a GLD-like dataset in the Kaggle layout under out_dir, plus `solution.csv` for local scoring and a
    non-landmark pool (`nonlandmark.csv`, `nonlandmark/a/b/c/<id>.jpg`)."""
    out_dir, seed, num_classes = Path(out_dir), settings.seed, settings.num_classes
    num_test_images, image_size = settings.num_test_images, settings.image_size
    rng = np.random.default_rng(seed)
    landmark_ids = np.sort(rng.choice(200_000, size=num_classes, replace=False))
    blueprints = [make_blueprint(rng) for _ in range(num_classes)]
    sizes = class_sizes(
        num_classes, settings.max_images_per_class, settings.min_images_per_class, settings.tail_exponent
    )
    sizes = sizes[rng.permutation(num_classes)]
    taken = set()

    train_labels = np.repeat(np.arange(num_classes), sizes)
    train = pd.DataFrame({"id": _new_ids(rng, len(train_labels), taken), "landmark_id": landmark_ids[train_labels]})

    num_landmarks = int(round(num_test_images * settings.test_landmark_fraction))
    test_labels = np.full(num_test_images, -1)
    test_labels[:num_landmarks] = rng.integers(0, num_classes, num_landmarks)
    test_labels = test_labels[rng.permutation(num_test_images)]
    test_ids = _new_ids(rng, num_test_images, taken)
    usage = rng.choice(["Public", "Private"], num_test_images, p=[1 / 3, 2 / 3])
    usage[rng.uniform(size=num_test_images) < settings.ignored_fraction] = "Ignored"
    nonlandmark_ids = _new_ids(rng, settings.num_nonlandmark_images, taken)

    jobs = [("train", image_id, label) for image_id, label in zip(train["id"], train_labels, strict=True)]
    jobs += [("test", image_id, label) for image_id, label in zip(test_ids, test_labels, strict=True)]
    jobs += [("nonlandmark", image_id, -1) for image_id in nonlandmark_ids]
    for split, image_id, label in tqdm(jobs, desc="synthetic images", unit="img", mininterval=1):
        image_rng = np.random.default_rng([seed, int(image_id, 16) % 2**63])
        image = render(image_rng, image_size, blueprints[label] if label >= 0 else None)
        path = image_path(out_dir, split, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "JPEG", quality=settings.jpeg_quality)

    write_csv(out_dir / "train.csv", train)
    write_csv(out_dir / "test.csv", pd.DataFrame({"id": test_ids}))
    write_csv(out_dir / "nonlandmark.csv", pd.DataFrame({"id": nonlandmark_ids}))
    write_csv(out_dir / "sample_submission.csv", pd.DataFrame({"id": test_ids, "landmarks": ""}))
    truth = [str(landmark_ids[label]) if label >= 0 else "" for label in test_labels]
    write_csv(out_dir / "solution.csv", pd.DataFrame({"id": test_ids, "landmarks": truth, "Usage": usage}))
    return {
        "train_images": len(train),
        "classes": num_classes,
        "test_images": num_test_images,
        "test_landmarks": num_landmarks,
        "nonlandmark_images": settings.num_nonlandmark_images,
    }
