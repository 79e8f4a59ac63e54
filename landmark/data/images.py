"""Reading scraped web images robustly. GLDv2 holds corrupt, truncated and empty files, grayscale, CMYK and
palette images, PNG or WebP bytes behind a .jpg name, EXIF-rotated photos, and a few enormous ones."""

import io
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm


class BadImage(Exception):
    """An image that cannot be used; its message is the reason recorded in the bad-image list."""


def open_rgb(path, max_pixels: int = Image.MAX_IMAGE_PIXELS, target_size: int | None = None) -> Image.Image:
    """The image as RGB, upright per its EXIF orientation, whatever its format and mode.

    Images over max_pixels are refused from their header, before any decoding (a decompression-bomb guard).
    With target_size, JPEGs decode at a reduced scale no smaller than it (much faster for large photos).
    """
    try:
        if isinstance(path, (str, os.PathLike)) and os.path.getsize(path) == 0:
            raise BadImage("empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage(f"too large ({width}x{height} pixels)")
            if target_size and image.format == "JPEG":
                image.draft("RGB", (target_size, target_size))
            ImageOps.exif_transpose(image, in_place=True)  # decodes it, then turns it upright if EXIF says so
            return image if image.mode == "RGB" else image.convert("RGB")
    except FileNotFoundError:
        raise BadImage("missing") from None
    except UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImage(f"undecodable ({str(error).splitlines()[0]})") from None


def check(path, max_pixels: int):
    """The reason the image at path cannot be used, or None when it can."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing"
    return check_bytes(data, max_pixels)


def check_bytes(data: bytes, max_pixels: int):
    """The reason an image's bytes cannot be used, or None when they can."""
    if not data:
        return "empty file"
    try:
        open_rgb(io.BytesIO(data), max_pixels)
    except BadImage as error:
        return str(error)
    return None


def _check_chunk(job):
    reader, max_pixels = job
    reasons = []
    for position in range(len(reader)):
        try:
            reasons.append(check_bytes(reader.read(position), max_pixels))
        except FileNotFoundError:
            reasons.append("missing")
    return reasons


def scan(ids, reader, max_pixels: int, workers: int | None = None) -> pd.DataFrame:
    """Decode every image of reader (landmark.data.shards: files or shards) once, in parallel, each worker sent
    the places of its chunk only. Returns id and reason (None when usable) of each image."""
    starts = range(0, len(reader), 256)
    chunks = [(reader.take(np.arange(start, min(start + 256, len(reader)))), max_pixels) for start in starts]
    results = []
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for chunk in tqdm(pool.map(_check_chunk, chunks), total=len(chunks), desc="check images", unit="chunk"):
            results.extend(chunk)
    return pd.DataFrame({"id": list(ids), "reason": results})
