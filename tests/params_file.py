"""The project's params.yaml with some sections replaced, for a test that runs a stage in a folder of its own:
every stage checks the whole file before its work, as `dvc repro` runs it."""

from pathlib import Path

import yaml

PARAMS = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def params_with(**sections) -> str:
    """params.yaml's text with these sections in place of the project's."""
    return yaml.safe_dump(PARAMS | sections)
