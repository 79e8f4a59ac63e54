"""Reading params.yaml, the one place that holds every hyperparameter."""

from pathlib import Path

import yaml

from landmark.errors import UserError


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    try:
        with open(path) as handle:
            params = yaml.safe_load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; run the stage from the project root")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})")
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected a mapping of stage names to their params")
    return params
