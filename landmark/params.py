"""Reading params.yaml, the one place that holds every hyperparameter."""

import re
from pathlib import Path

import yaml

from landmark.errors import UserError


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as DVC does (YAML 1.2): `5e-05` and `1.0e5` are floats. YAML 1.1 wants
    a dot and a signed exponent (`5.0e-05`) and reads the others as strings, so `dvc exp run -S x=5e-05` would
    write a number that DVC compares as one and every stage refused."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    try:
        with open(path) as handle:
            params = yaml.load(handle, ParamsLoader)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; run the stage from the project root") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected a mapping of stage names to their params")
    return params
