"""Writing outputs so that a killed stage never leaves a half-written file for DVC to cache."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from landmark.errors import UserError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as error:
        raise UserError(
            f"cannot write {path}: {error.strerror}; check the folder's permissions and free space"
        ) from None
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(
            f"cannot write {path}: {error.strerror}; check the folder's permissions and free space"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_text(path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path, frame, float_format=None) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False, float_format=float_format)


def link_or_copy(source, target) -> None:
    """A hard link to source at target (no second copy of the bytes), or a copy across file systems."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
