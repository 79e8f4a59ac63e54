"""Profiles: partial params files (profiles/*.yaml) applied on top of params.yaml as `dvc exp run -S` flags, so
a named setup (the paper's, real photos') is one tracked experiment and params.yaml keeps the embedded defaults.
A key whose value is null (`~` in YAML) is taken out (Hydra's `-S ~key`), e.g. a variant the profile leaves out."""

from landmark.errors import UserError
from landmark.params import load_params
from landmark.settings import Variant


def _leaves(mapping: dict, prefix: str = ""):
    for key, value in mapping.items():
        if isinstance(value, dict) and "name" not in value:  # a mapping with a name is a model part
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


def _variant_setting(dotted: str) -> bool:
    """Whether the key is variants.NAME.SETTING: of a variant of params.yaml that does not write SETTING itself
    (it inherits it from variant_defaults), or of a variant the profile adds (a row of its own)."""
    parts, settings = dotted.split("."), set(Variant.model_fields)
    return len(parts) >= 3 and parts[0] == "variants" and parts[2] in settings


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # a part: hydra's dictionary syntax
        return "{" + ",".join(f"{key}:{_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return str(value)


def set_param_flags(profile_path, params_path="params.yaml") -> list:
    """`-S key=value` for every leaf of the profile; each key must exist in params.yaml, or be a setting of a
    variant, which DVC adds (`-S ++key=value`): one the variant inherits from variant_defaults, or one of a variant
    the profile adds, which inherits the rest. A null leaf takes its key out (`-S ~key`)."""
    profile, params = load_params(profile_path), load_params(params_path)
    flags = []
    for key, value in _leaves(profile):
        found = _has_key(params, key)
        if value is None:
            if not found:
                raise UserError(f"{profile_path}: {key} is not a key of {params_path}, so it cannot be left out")
            flags += ["-S", f"~{key}"]
            continue
        if not found and not _variant_setting(key):
            raise UserError(f"{profile_path}: {key} is not a key of {params_path}; fix the profile")
        text = _text(value)
        if any(character.isspace() for character in text):
            raise UserError(f"{profile_path}: {key} has whitespace in its value, which a shell would split")
        flags += ["-S", f"{key}={text}" if found else f"++{key}={text}"]
    return flags
