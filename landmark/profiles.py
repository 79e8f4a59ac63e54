"""Profiles: partial params files (profiles/*.yaml) applied on top of params.yaml as `dvc exp run -S` flags, so
a named setup (the paper's) is one tracked experiment and params.yaml keeps the embedded defaults."""

from landmark.errors import UserError
from landmark.params import load_params


def _leaves(mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _has_key(params: dict, dotted: str) -> bool:
    node = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def set_param_flags(profile_path, params_path="params.yaml") -> list:
    """`-S key=value` for every leaf of the profile; each key must exist in params.yaml."""
    profile, params = load_params(profile_path), load_params(params_path)
    flags = []
    for key, value in _leaves(profile):
        if not _has_key(params, key):
            raise UserError(f"{profile_path}: {key} is not a key of {params_path}; fix the profile")
        if isinstance(value, str) and any(character.isspace() for character in value):
            raise UserError(f"{profile_path}: {key} has whitespace in its value, which a shell would split")
        text = "true" if value is True else "false" if value is False else str(value)
        flags += ["-S", f"{key}={text}"]
    return flags
