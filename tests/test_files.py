"""Atomic outputs: a killed writer leaves the old file intact, and a full disk or a bad path is one line."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from landmark.errors import UserError
from landmark.files import atomic_path, write_text

ROOT = Path(__file__).parents[1]
HALF_WRITTEN = """
import sys, time
from landmark.files import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    with open(temporary, "w") as handle:
        handle.write("new, half written")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)
"""


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    writer = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITTEN, str(target)],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert target.read_text() == "old"
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".metrics.json.")  # a temp name DVC never tracks


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(UserError, match=r"cannot write .*out.csv: No space left on device; check"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_an_output_path_under_a_file_is_one_line(tmp_path):
    (tmp_path / "reports").write_text("a file where a folder should be")
    with pytest.raises(UserError, match=r"cannot write .*reports/results.md: .*; check the folder's permissions"):
        write_text(tmp_path / "reports/results.md", "text")
