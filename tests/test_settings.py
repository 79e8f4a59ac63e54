"""params.yaml parsed once into typed settings: inheritance from variant_defaults, one line per wrong key, and a new
section checked once it is a field of Settings."""

import copy
from pathlib import Path
from typing import Annotated

import pytest
import yaml
from pydantic import PlainValidator, ValidationError

from landmark.errors import UserError
from landmark.settings import Augmentation, Runtime, Section, Settings, parse, parse_params, whole

PARAMS = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())


def parsed(edit):
    params = copy.deepcopy(PARAMS)
    edit(params)
    return parse_params(params)


def test_a_variant_takes_the_defaults_and_replaces_only_what_it_gives():
    settings = parse_params(PARAMS)
    defaults = PARAMS["variant_defaults"]
    resnet, final = settings.variants["resnet50"], settings.variants["xception_cbp_selfattn"]
    assert resnet.backbone == "resnet50" and resnet.lr == defaults["lr"] and resnet.steps == defaults["steps"]
    assert final.backbone == "legacy_xception" and final.pooling == {"name": "cbp_vector", "dim": 8192, "seed": 0}
    assert final.augmentation == Augmentation(translate=0.1, scale=(0.9, 1.1), flip=0.5)
    changed = parsed(lambda params: params["variant_defaults"].update(lr=0.01))
    assert {name: variant.lr for name, variant in changed.variants.items()} == dict.fromkeys(PARAMS["variants"], 0.01)
    own = parsed(lambda params: params["variants"]["xception"].update(lr=0.05, augmentation={"translate": 0.0,
                 "scale": [1.0, 1.0], "flip": 0.0}))  # fmt: skip
    assert own.variants["xception"].lr == 0.05 and own.variants["resnet50"].lr == defaults["lr"]
    assert own.variants["xception"].augmentation == Augmentation(
        translate=0.0, scale=(1.0, 1.0), flip=0.0
    )  # replaced whole


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["train"].pop("seed"), r"^params.yaml train.seed: missing$"),
        (lambda p: p["runtime"].update(workers=2), r"^params.yaml runtime.workers: unknown setting; expected one of"),
        (lambda p: p.update(trian={}), r"^params.yaml trian: unknown section; expected data, filter"),
        (lambda p: p["runtime"].update(compile=1), r"^params.yaml runtime.compile: 1 is not auto, true or false$"),
        (lambda p: p["runtime"].update(gpus=True), r"^params.yaml runtime.gpus: True is not auto or a whole number"),
        (lambda p: p["split"].update(dev_fraction=1.5), r"^params.yaml split.dev_fraction: 1.5 must be a number fr"),
        (lambda p: p["variant_defaults"].update(pooling=3), r"^params.yaml variants.resnet50.pooling: 3 must be a pa"),
        (lambda p: p["variants"].update(xception=[1]), r"^params.yaml variants.xception: expected a mapping"),
        (lambda p: p.update(variants={}), r"^params.yaml variants: expected a mapping of variant names"),
        (lambda p: p["data"].pop("kaggle"), r"^params.yaml data.kaggle: missing$"),
        (lambda p: p["data"].update(local=3), r"^params.yaml data.local: expected a mapping of settings, got 3$"),
        (lambda p: p["variants"].update({2: {}}), r"^params.yaml variants.2: the name 2 must be text; quote it$"),
    ],
)
def test_a_wrong_value_is_one_line_naming_its_key(edit, message):
    with pytest.raises(UserError, match=message):
        parsed(edit)


def test_a_new_section_is_checked_once_it_is_a_field_of_settings():
    class Retrieval(Section):
        top_k: Annotated[int, PlainValidator(whole(1))]

    class WithRetrieval(Settings):
        retrieval: Retrieval

    assert parse(WithRetrieval, PARAMS | {"retrieval": {"top_k": 5}}).retrieval == Retrieval(top_k=5)
    with pytest.raises(UserError, match=r"^params.yaml retrieval.top_k: 0 must be a whole number >= 1$"):
        parse(WithRetrieval, PARAMS | {"retrieval": {"top_k": 0}})
    with pytest.raises(UserError, match=r"^params.yaml retrieval: missing section$"):
        parse(WithRetrieval, PARAMS)
    with pytest.raises(
        UserError, match=r"^params.yaml retrieval: unknown section; expected data, filter, .*, variants$"
    ):
        parse_params(PARAMS | {"retrieval": {"top_k": 5}})


def test_settings_are_typed_and_frozen():
    runtime = parse(Runtime, PARAMS["runtime"], "runtime")
    assert isinstance(runtime.inference_batch_size, int)
    with pytest.raises(ValidationError, match="frozen"):
        runtime.device = "cuda"


def test_params_read_numbers_as_dvc_reads_them(tmp_path):
    """`dvc exp run -S data.rehearsal.fraction=5e-05` writes 5e-05, which DVC reads as a number (YAML 1.2) and
    PyYAML's safe loader as a string (YAML 1.1): the stages read it as DVC does."""
    from dvc.utils.serialize import parse_yaml

    from landmark.params import load_params

    text = "a: 5e-05\nb: 1.0e5\nc: -2E+2\nd: 12\ne: 0.5\nf: 5.0e-05\ng: e5\nh: .5e1\ni: '1e3'\n"
    (tmp_path / "params.yaml").write_text(text)
    read = load_params(tmp_path / "params.yaml")
    assert read == parse_yaml(text, "params.yaml")
    assert read["a"] == 5e-05 and read["g"] == "e5" and read["i"] == "1e3"
