"""params.yaml, parsed and checked once into typed settings, before any work starts.

`Settings` is the whole file: one field per section, each a frozen pydantic model (`Section`) whose fields say
their type and, with a `PlainValidator`, how their value is checked. A wrong, missing or unknown key is one line
naming it (`parse`). Every stage reads its settings the one way, `load_settings()`, and never casts a raw value at
the point of use. Nothing here imports torch or the training code: the download stage checks every value in
milliseconds before a download of hours.

Two kinds of setting (the README's "Parameters"):
- what is trained or computed: every section but `runtime`. Each is a DVC param of the stages whose outputs it
  shapes, so changing one reruns exactly those.
- how fast it runs: the `runtime` section (device, processes, loader workers, torch.compile, logging, dev and
  checkpoint intervals, the inference batch). No stage depends on it, so changing one reruns nothing, and a
  training's checkpoint is resumed across a change of it.

Variants inherit: a variant's params are `variant_defaults` with the variant's own keys on top, each key
replacing the default's whole value.
"""

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, ValidationError, model_validator

from landmark.errors import UserError
from landmark.params import load_params


class SettingError(ValueError):
    """What is wrong with a setting: the text after `params.yaml KEY: `. `key` continues the path pydantic was
    validating, for a check of a whole mapping that blames one of its keys."""

    def __init__(self, message: str, key: tuple = ()):
        super().__init__(message)
        self.key = key


def parse(cls, mapping, where: str = ""):
    """An instance of the settings model cls from a params mapping; `where` is its params key. The first wrong
    value is one line: `params.yaml KEY: what is wrong`."""
    try:
        return cls.model_validate(mapping)
    except ValidationError as error:
        first = error.errors()[0]
        cause, loc = first.get("ctx", {}).get("error"), first["loc"]
        if loc and loc[-1] == "[key]":  # a name that YAML read as a number or a boolean
            loc, cause = loc[:-1], SettingError(f"the name {first['input']!r} must be text; quote it")
        path = (where, *loc, *getattr(cause, "key", ()))
        key = ".".join(str(part) for part in path if part != "")
        raise UserError(f"params.yaml {key}: {cause if isinstance(cause, SettingError) else first['msg']}") from None


class Section(BaseModel):
    """A mapping of params.yaml (a section, or one inside it: a variant, a step's options). No setting has a
    default: every one is written in params.yaml, the one place that holds them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def every_setting_written(cls, mapping):
        if isinstance(mapping, cls):
            return mapping
        if not isinstance(mapping, dict):
            raise SettingError(f"expected a mapping of settings, got {mapping!r}")
        unknown = [key for key in mapping if key not in cls.model_fields]
        if unknown:
            raise SettingError(f"unknown setting; expected one of {', '.join(cls.model_fields)}", (unknown[0],))
        missing = [key for key in cls.model_fields if key not in mapping]
        if missing:
            raise SettingError("missing", (missing[0],))
        return mapping


# Checks: each takes a value and returns it, or raises a SettingError saying what is wrong with it.


def whole(minimum: int):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SettingError(f"{value!r} must be a whole number >= {minimum}")
        return value

    return check


def positive(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SettingError(f"{value!r} must be a positive number")
    return float(value)


def non_negative(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SettingError(f"{value!r} must be a number >= 0")
    return float(value)


def fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SettingError(f"{value!r} must be a number from 0 to 1")
    return float(value)


def share(value) -> float:
    """A fraction that keeps something: above 0, at most 1."""
    if fraction(value) == 0:
        raise SettingError(f"{value!r} must be above 0 and at most 1")
    return float(value)


def none_or_number(value) -> float | None:
    if value == "none":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(f"{value!r} must be none or a number")
    return float(value)


def text(value) -> str:
    if not isinstance(value, str) or not value:
        raise SettingError(f"{value!r} must be a non-empty string")
    return value


def url_or_empty(value) -> str:
    if value is None or value == "":
        return ""
    return text(value)


def one_of(*choices):
    """One of the choices, of its very type (so 1 is not true)."""
    names = [str(choice).lower() if isinstance(choice, bool) else choice for choice in choices]

    def check(value):
        if not any(value == choice and type(value) is type(choice) for choice in choices):
            raise SettingError(f"{value!r} is not {', '.join(names[:-1])} or {names[-1]}")
        return value

    return check


def one_of_or(word: str, check, what: str):
    """The word itself, or a value that passes check."""

    def check_word(value):
        if value == word:
            return value
        try:
            return check(value)
        except SettingError:
            raise SettingError(f"{value!r} is not {what}") from None

    return check_word


def auto_or(check, what: str):
    return one_of_or("auto", check, f"auto or {what}")


def device(value) -> str:
    if value not in ("auto", "cpu", "cuda") and not (isinstance(value, str) and value.startswith("cuda:")):
        raise SettingError(f"{value!r} is not auto, cpu or cuda")
    return value


def host_and_port(value) -> str:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(f"{value!r} must be host:port, e.g. node0.example.com:29500")
    return value


def part(value):
    """A model part: a name (`avg`), or a mapping with its name and options (`{name: cbp, dim: 8192}`)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise SettingError(f"{value!r} must be a part name or a mapping with a name and options")


def scale_range(value) -> tuple:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(positive(v) for v in value)):
        raise SettingError(f"{value!r} must be [smallest, largest], two positive numbers")
    if value[0] > value[1]:
        raise SettingError(f"{value!r} must be [smallest, largest]; swap them")
    return (float(value[0]), float(value[1]))


def scales(value) -> tuple:
    positives = [item for item in value if type(item) in (int, float) and item > 0] if isinstance(value, list) else []
    if not value or len(positives) < len(value):
        raise SettingError(f"{value!r} must be a list of positive numbers, e.g. [0.7071, 1, 1.4142]")
    if len(set(value)) < len(value):
        raise SettingError(f"{value!r} names a scale twice")
    return tuple(float(item) for item in value)


def names(value) -> tuple:
    if not (isinstance(value, list) and value and all(isinstance(item, str) and item for item in value)):
        raise SettingError(f"{value!r} must be a list of names")
    if len(set(value)) < len(value):
        raise SettingError(f"{value!r} names one twice")
    return tuple(value)


def positives(value) -> tuple:
    if not isinstance(value, list) or not value:
        raise SettingError(f"{value!r} must be a list of positive numbers")
    return tuple(positive(item) for item in value)


def mapping_of_mappings(value) -> dict:
    """name -> its options (a mapping; empty or none: no options)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        options is None or isinstance(options, dict) for options in value.values()
    ):
        raise SettingError(f"{value!r} must map each name to a mapping of its options")
    return {name: dict(options or {}) for name, options in value.items()}


# The types the checks make: a field's annotation is what it holds, and how its raw value is checked.
OneOrMore = Annotated[int, PlainValidator(whole(1))]
ZeroOrMore = Annotated[int, PlainValidator(whole(0))]
Fraction = Annotated[float, PlainValidator(fraction)]
Positive = Annotated[float, PlainValidator(positive)]
NonNegative = Annotated[float, PlainValidator(non_negative)]
Text = Annotated[str, PlainValidator(text)]
UrlOrEmpty = Annotated[str, PlainValidator(url_or_empty)]
Part = Annotated[str | dict, PlainValidator(part)]
Names = Annotated[tuple[str, ...], PlainValidator(names)]


# The sections.


class Synthetic(Section):
    """The embedded offline GLD-like dataset (landmark/data/synthetic.py)."""

    seed: ZeroOrMore
    num_classes: Annotated[int, PlainValidator(whole(2))]
    max_images_per_class: OneOrMore
    min_images_per_class: OneOrMore
    tail_exponent: Positive
    num_test_images: OneOrMore
    test_landmark_fraction: Fraction
    ignored_fraction: Fraction
    num_nonlandmark_images: ZeroOrMore  # the non-landmark pool, apart from the test set
    image_size: Annotated[int, PlainValidator(whole(8))]
    jpeg_quality: OneOrMore


class Kaggle(Section):
    competition: Annotated[str, PlainValidator(one_of("landmark-recognition-2019", "landmark-recognition-2020"))]
    shard_base_url: Text
    train_shards: OneOrMore
    test_shards: OneOrMore
    solution_url: UrlOrEmpty  # empty: no solution file, the submission is not scored


class Local(Section):
    path: Text


class GLDv2(Section):
    """What the rehearsal copies of GLDv2 (2019), at 1×: its size, the paper's filter, its test set and shards."""

    classes: OneOrMore
    images: OneOrMore
    largest_class: OneOrMore
    smallest_class: OneOrMore
    filter_threshold: OneOrMore  # the paper's filter: classes of this many images or more,
    filter_classes: OneOrMore  # how many of them there are
    filter_images: OneOrMore  # and their images
    test_images: OneOrMore
    test_landmark_fraction: Fraction
    ignored_fraction: Fraction  # of the test set, scored in neither leaderboard
    train_shards: OneOrMore
    test_shards: OneOrMore


class Rehearsal(Section):
    """GLDv2 in miniature, served from a local mirror (landmark/data/rehearsal.py)."""

    fraction: Annotated[float, PlainValidator(share)]  # of GLDv2: its classes, test photos and pool
    seed: ZeroOrMore
    nonlandmark_images: ZeroOrMore  # the non-landmark pool at 1×, scaled like the rest
    image_size: Annotated[int, PlainValidator(whole(8))]
    jpeg_quality: OneOrMore
    gldv2: GLDv2

    def scaled(self, count: int) -> int:
        """count at 1×, at this rehearsal's fraction."""
        return int(round(count * self.fraction))


class Data(Section):
    source: Annotated[str, PlainValidator(one_of("synthetic", "kaggle", "local", "rehearsal"))]
    synthetic: Synthetic
    kaggle: Kaggle
    local: Local
    rehearsal: Rehearsal
    # A folder of photos that show no landmark (searched recursively), for non-landmark suppression and for
    # validation; empty: none (kaggle, local), or the synthetic set's own pool.
    nonlandmarks: UrlOrEmpty
    # A folder in the Kaggle layout whose photos only the gallery gets (stages/gallery_photos.py): no retraining.
    gallery_photos: Text


class Filter(Section):
    min_samples_per_class: OneOrMore
    max_bad_fraction: Fraction
    max_image_pixels: OneOrMore


class Split(Section):
    dev_fraction: Fraction  # of each class the filter kept
    tail_dev_fraction: Fraction  # of the classes below the filter (2 images or more): one each
    holdout_fraction: Fraction  # of the non-landmark pool, held out for validation
    seed: ZeroOrMore


class Pack(Section):
    shard_size_mb: Positive
    seed: ZeroOrMore
    max_image_pixels: OneOrMore


class Train(Section):
    """What every variant's training shares and its result depends on."""

    seed: ZeroOrMore
    precision: Annotated[str, PlainValidator(one_of("auto", "bf16", "fp32"))]  # auto: bf16 on a GPU, fp32 on CPU
    decode: Annotated[str, PlainValidator(one_of("worker", "device"))]  # PIL in the loader workers, or nvJPEG on a GPU


class Runtime(Section):
    """How fast this machine runs the pipeline; no stage depends on these (module docstring)."""

    device: Annotated[str, PlainValidator(device)]
    gpus: Annotated[int | str, PlainValidator(auto_or(whole(1), "a whole number >= 1"))]
    num_workers: Annotated[int | str, PlainValidator(auto_or(whole(0), "a whole number >= 0"))]
    compile: Annotated[bool | str, PlainValidator(one_of("auto", True, False))]
    nodes: OneOrMore  # machines training together under torchrun
    node_rank: ZeroOrMore  # this machine's place among them; node 0 writes the outputs
    rendezvous: Annotated[str, PlainValidator(host_and_port)]  # node 0's host:port, where the nodes meet
    log_every: OneOrMore
    eval_every: OneOrMore
    checkpoint_every: OneOrMore
    inference_batch_size: OneOrMore

    @model_validator(mode="after")
    def node_among_nodes(self):
        if self.node_rank >= self.nodes:
            raise SettingError(f"{self.node_rank} must be below runtime.nodes ({self.nodes})", ("node_rank",))
        return self


class Augmentation(Section):
    """The paper's augmentation, drawn per image on the device (landmark.data.loading.augmentation_matrices)."""

    translate: Fraction  # a random shift of up to this share of the side
    scale: Annotated[tuple[float, float], PlainValidator(scale_range)]  # a random zoom in this range
    flip: Fraction  # the probability of a horizontal flip


class StopEarly(Section):
    """Training stops once the dev GAP has stopped rising: a dev pass every `every` steps, and the stop after
    `patience` of them in a row without a GAP above the best before them."""

    every: OneOrMore
    patience: OneOrMore


class LearningRateSchedule(Section):
    """The learning rate over a training: a linear warm-up from lr / warmup_steps to lr over the first
    warmup_steps, then a cosine from lr down to lr · final_fraction at the variant's last step."""

    warmup_steps: ZeroOrMore
    final_fraction: Fraction


def none_or_mapping(value):
    return None if value == "none" else value


class Variant(Section):
    """One row of the results table: backbone → attention → pooling → neck → head, its loss, and how it is
    trained."""

    backbone: Text
    min_class_images: Annotated[
        int | str, PlainValidator(one_of_or("filter", whole(1), "filter or a whole number >= 1"))
    ]
    pooling: Part
    attention: Part
    neck: Part
    head: Part
    loss: Part
    pretrained: Text  # none | hub | a package of INSTALLED_WEIGHTS | a path to a local weights file
    frozen_tensors: ZeroOrMore
    image_size: OneOrMore
    batch_size: OneOrMore
    lr: Positive
    steps: OneOrMore  # at most: with stop_early, fewer where the dev GAP stops rising
    stop_early: Annotated[StopEarly | None, BeforeValidator(none_or_mapping)]
    lr_schedule: Annotated[LearningRateSchedule | None, BeforeValidator(none_or_mapping)]  # none: lr at every step
    augmentation: Augmentation

    @model_validator(mode="after")
    def warm_up_within_the_steps(self):
        if self.lr_schedule is not None and self.lr_schedule.warmup_steps >= self.steps:
            raise SettingError(
                f"{self.lr_schedule.warmup_steps} warm-up steps leave none of the {self.steps} steps to the cosine; "
                "lower warmup_steps or raise steps",
                ("lr_schedule", "warmup_steps"),
            )
        return self


class Evaluate(Section):
    paper_batch_size: OneOrMore  # the paper's GAP was averaged over mini-batches of 64


class Saliency(Section):
    images: OneOrMore
    seed: ZeroOrMore


class Ensemble(Section):
    variants: Names  # of embed.variants: their whitened embeddings, concatenated
    weights: Annotated[tuple[float, ...], PlainValidator(positives)]  # one per variant, in their order

    @model_validator(mode="after")
    def a_weight_per_variant(self):
        if len(self.weights) != len(self.variants):
            raise SettingError("give one positive weight per variant, in their order", ("weights",))
        return self


class Embed(Section):
    variants: Names  # the variants recognition compares: embed, index, recognize for each
    scales: Annotated[tuple[float, ...], PlainValidator(scales)]  # each image is looked at resized by each; the mean
    flip: Annotated[bool, PlainValidator(one_of(True, False))]  # and each look mirrored too
    precision: Annotated[str, PlainValidator(one_of("auto", "bf16", "fp32"))]  # auto: bf16 where it is native
    # what runs the model: torch, or its ONNX export under ONNX Runtime (fp32, on the CPU); auto: ONNX Runtime on a
    # CPU unless precision asks for bf16, torch on a GPU
    engine: Annotated[str, PlainValidator(one_of("auto", "torch", "onnxruntime"))]
    # name -> variants and weights: recognised like a variant (stages.ensemble)
    ensembles: Annotated[dict[str, Ensemble], BeforeValidator(mapping_of_mappings)]

    @model_validator(mode="after")
    def engine_computes_the_precision(self):
        if self.engine == "onnxruntime" and self.precision == "bf16":
            raise SettingError(
                "onnxruntime runs the model in fp32; set embed.precision to fp32 or auto, or embed.engine to torch "
                "for bf16",
                ("engine",),
            )
        return self

    @property
    def recognitions(self) -> tuple:
        """What the recognize stages compare: every variant, then every ensemble."""
        return self.variants + tuple(self.ensembles)


class LocalFeatures(Section):
    """SIFT features of the stored photos, for the verify step (landmark.recognition.verification)."""

    max_side: Annotated[int, PlainValidator(whole(16))]  # pixels: a larger photo is shrunk to this long side first
    max_features: Annotated[int, PlainValidator(whole(4))]  # the strongest keypoints kept per photo


class Index(Section):
    whitening: Annotated[str, PlainValidator(one_of("none", "pca"))]  # PCA whitening learned on the gallery
    whitening_dims: OneOrMore  # the axes it keeps
    whitening_shrinkage: NonNegative  # of the mean variance, added to each axis's before it is evened out
    whitening_sample: OneOrMore  # train images it is learned on, at most (a seeded sample)
    exact_below: OneOrMore  # fewer gallery images: exact search (faiss IndexFlatIP)
    factory: Text  # the approximate index from there on, as a faiss index_factory string
    train_per_list: OneOrMore  # the approximate index is trained on this many vectors per inverted list,
    train_at_least: OneOrMore  # and on at least this many
    seed: ZeroOrMore  # of the whitening's sample and the index's


class Recognize(Section):
    neighbours: OneOrMore  # k nearest gallery images that vote
    nprobe: OneOrMore  # inverted lists an approximate index visits per query
    refine_factor: OneOrMore  # a refining index re-ranks this many per neighbour
    blend_weight: Positive  # the classifier's vote in a blend, times its probability
    # each step's options, checked by its class (landmark.recognition.steps) when a method names it
    steps: Annotated[dict[str, dict], PlainValidator(mapping_of_mappings)]
    methods: Names  # each a row of the results: a base and its steps (landmark.recognition.method)
    nonlandmark_share: Fraction  # of the test set: the validation GAP weighs its non-landmarks to it
    dev_weighting: Annotated[str, PlainValidator(one_of("images", "classes"))]  # what a dev landmark counts for


class Submission(Section):
    variant: Text  # best (by validation GAP) or one of embed.variants
    method: Text  # best (by validation GAP) or one of recognize.methods
    min_confidence: Annotated[float | None, PlainValidator(none_or_number)]  # below it, the prediction is left empty
    registered_model: Text  # the chosen recogniser's name in MLflow's Model Registry (landmark.serving)


class Report(Section):
    """What the figures show (reports/)."""

    curve_smoothing: Annotated[float, PlainValidator(fraction)]  # curves.png: the train curves' weight of the past
    queries_per_kind: OneOrMore  # retrieval.png: queries drawn of each kind (recognize's neighbours.csv)


class Settings(BaseModel):
    """Every section of params.yaml, typed, and every variant with variant_defaults applied. A new section is a
    new field here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Data
    filter: Filter
    split: Split
    pack: Pack
    train: Train
    runtime: Runtime
    evaluate: Evaluate
    saliency: Saliency
    embed: Embed
    local_features: LocalFeatures
    index: Index
    recognize: Recognize
    submission: Submission
    report: Report
    variants: dict[str, Variant]

    @model_validator(mode="before")
    @classmethod
    def sections_and_variants(cls, params):
        """Every section there and none unknown; each variant's mapping made from variant_defaults and its own."""
        if isinstance(params, cls):
            return params
        unknown = [key for key in params if key not in cls.model_fields and key != "variant_defaults"]
        if unknown:
            raise SettingError(f"unknown section; expected {', '.join(cls.model_fields)}", (unknown[0],))
        missing = [key for key in cls.model_fields if key not in params and key != "variants"]
        if missing:
            raise SettingError("missing section", (missing[0],))
        variants = params.get("variants")
        if not isinstance(variants, dict) or not variants:
            raise SettingError("expected a mapping of variant names to their params", ("variants",))
        defaults = params.get("variant_defaults") or {}
        for key, mapping in (
            ("variant_defaults", defaults),
            *((f"variants.{name}", variants[name] or {}) for name in variants),
        ):
            if not isinstance(mapping, dict):
                raise SettingError("expected a mapping of variant params", (key,))
        merged = {name: defaults | (own or {}) for name, own in variants.items()}
        return {key: value for key, value in params.items() if key != "variant_defaults"} | {"variants": merged}

    @model_validator(mode="after")
    def names_that_exist(self):
        """Every name one section gives of another's: embedded variants, ensembles' parts, the submission's."""
        embedded = self.embed.variants
        unknown = [name for name in embedded if name not in self.variants]
        if unknown:
            raise SettingError(
                f"{unknown[0]!r} is not in variants; choose from {', '.join(self.variants)}", ("embed", "variants")
            )
        for name, ensemble in self.embed.ensembles.items():
            if name in embedded:
                raise SettingError("a variant's name; name the ensemble otherwise", ("embed", "ensembles", name))
            for variant in ensemble.variants:
                if variant not in embedded:
                    raise SettingError(
                        f"{variant!r} is not in embed.variants; add it there, "
                        f"or take {name} out (-S '~embed.ensembles.{name}')",
                        ("embed", "ensembles", name, "variants"),
                    )
        for key, where, choices in (
            ("variant", "embed.variants", self.embed.recognitions),  # an ensemble is a variant there
            ("method", "recognize.methods", self.recognize.methods),
        ):
            chosen = getattr(self.submission, key)
            if chosen != "best" and chosen not in choices:
                raise SettingError(
                    f"{chosen!r} is not in {where}; use best or one of {', '.join(choices)}", ("submission", key)
                )
        return self

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise UserError(f"params.yaml variants: no variant {name!r}; choose one of {', '.join(self.variants)}")
        return self.variants[name]


def parse_params(params: dict) -> Settings:
    """Check every value of params.yaml (not the machine: see landmark.checks); raises a UserError naming the key."""
    return parse(Settings, params)


def load_settings(path="params.yaml") -> Settings:
    """params.yaml, read and checked: how every stage reads its settings."""
    return parse_params(load_params(path))


def nonlandmark_shortfalls(data: Data, split: Split) -> dict:
    """What the run's non-landmarks will lack, told from the settings before any photo is read: "pool" (none to
    search, for the suppression steps) and "holdout" (none held out, for a validation that asks about
    non-landmarks), each as (the params key to blame, why, the fix). A folder's photos are counted by the split
    stage, which stops where a part it should fill comes out empty."""
    folder_fix = "point data.nonlandmarks at a folder of photos without landmarks"
    if data.source == "synthetic" and not data.nonlandmarks:
        total = data.synthetic.num_nonlandmark_images  # known: the generator draws exactly this many
    elif data.source == "rehearsal" and not data.nonlandmarks:
        total = data.rehearsal.scaled(data.rehearsal.nonlandmark_images)
    elif data.nonlandmarks or (data.source == "local" and (Path(data.local.path) / "nonlandmark.csv").is_file()):
        total = None  # a folder of photos: at least one, until the split stage counts them
    else:
        total = 0
    if total == 0:
        own_pool = {"synthetic": "num_nonlandmark_images", "rehearsal": "nonlandmark_images"}.get(data.source)
        why = "no non-landmark pool" + (f" (data.{data.source}.{own_pool} is 0)" if own_pool else " is given")
        return dict.fromkeys(("pool", "holdout"), ("data.nonlandmarks", why, folder_fix))
    held_out = total and int(round(total * split.holdout_fraction))  # None: counted later
    shortfalls = {}
    if split.holdout_fraction == 1 or (total and held_out == total):
        why = f"{split.holdout_fraction} holds out every photo of the non-landmark pool, leaving none to search"
        shortfalls["pool"] = ("split.holdout_fraction", why, "lower split.holdout_fraction")
    if split.holdout_fraction == 0 or held_out == 0:
        why = f"{split.holdout_fraction} holds out no photo of the non-landmark pool to validate with"
        shortfalls["holdout"] = ("split.holdout_fraction", why, "raise split.holdout_fraction")
    return shortfalls
