"""params.yaml, parsed and checked once into typed settings, before any work starts.

Each section of params.yaml is one frozen dataclass, registered under its name with `@params_section`; a field's
`setting(check)` says how its value is checked, and a wrong, missing or unknown key is one line naming it. Stages
take these objects and never cast a raw value at the point of use. Nothing here imports torch or the training
code: the download stage checks every value in milliseconds before a download of hours.

Two kinds of setting (the README's "Parameters"):
- what is trained or computed: every section but `runtime`. Each is a DVC param of the stages whose outputs it
  shapes, so changing one reruns exactly those.
- how fast it runs: the `runtime` section (device, processes, loader workers, torch.compile, logging, dev and
  checkpoint intervals, the inference batch). No stage depends on it, so changing one reruns nothing, and a
  training's checkpoint is resumed across a change of it.

Variants inherit: a variant's params are `variant_defaults` with the variant's own keys on top, each key
replacing the default's whole value.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from landmark.errors import UserError

SECTIONS = {}  # section name -> its dataclass, filled by @params_section


def params_section(name: str):
    """Register a dataclass as the typed form of params.yaml's section `name`."""

    def register(cls):
        SECTIONS[name] = cls
        return cls

    return register


def setting(check):
    """A dataclass field whose value from params.yaml goes through check(value, key) first. No field has a
    default: every setting is written in params.yaml, the one place that holds them."""
    return field(metadata={"check": check})


def parse(cls, mapping, where: str):
    """An instance of the settings dataclass cls from a params mapping; `where` is its params key."""
    if not isinstance(mapping, dict):
        raise UserError(f"params.yaml {where}: expected a mapping of settings, got {mapping!r}")
    fields = {item.name: item for item in dataclasses.fields(cls)}
    unknown = [key for key in mapping if key not in fields]
    if unknown:
        raise UserError(f"params.yaml {where}.{unknown[0]}: unknown setting; expected one of {', '.join(fields)}")
    values = {}
    for name, item in fields.items():
        if name not in mapping:
            raise UserError(f"params.yaml {where}.{name}: missing")
        values[name] = item.metadata["check"](mapping[name], f"{where}.{name}")
    return cls(**values)


def as_params(settings) -> dict:
    """A settings object as the plain mapping params.yaml would hold (for MLflow, fingerprints, saved models)."""
    return dataclasses.asdict(settings)


# Checks: each takes (value, key) and returns the value, or raises a UserError naming the key.


def whole(minimum: int):
    def check(value, key):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserError(f"params.yaml {key}: {value!r} must be a whole number >= {minimum}")
        return value

    return check


def positive(value, key) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"params.yaml {key}: {value!r} must be a positive number")
    return float(value)


def fraction(value, key) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"params.yaml {key}: {value!r} must be a number from 0 to 1")
    return float(value)


def none_or_number(value, key) -> float | None:
    if value == "none":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"params.yaml {key}: {value!r} must be none or a number")
    return float(value)


def text(value, key) -> str:
    if not isinstance(value, str) or not value:
        raise UserError(f"params.yaml {key}: {value!r} must be a non-empty string")
    return value


def url_or_empty(value, key) -> str:
    if value is None or value == "":
        return ""
    return text(value, key)


def one_of(*choices):
    """One of the choices, of its very type (so 1 is not true)."""
    names = [str(choice).lower() if isinstance(choice, bool) else choice for choice in choices]

    def check(value, key):
        if not any(value == choice and type(value) is type(choice) for choice in choices):
            raise UserError(f"params.yaml {key}: {value!r} is not {', '.join(names[:-1])} or {names[-1]}")
        return value

    return check


def one_of_or(word: str, check, what: str):
    """The word itself, or a value that passes check."""

    def check_word(value, key):
        if value == word:
            return value
        try:
            return check(value, key)
        except UserError:
            raise UserError(f"params.yaml {key}: {value!r} is not {what}") from None

    return check_word


def auto_or(check, what: str):
    return one_of_or("auto", check, f"auto or {what}")


def device(value, key) -> str:
    if value not in ("auto", "cpu", "cuda") and not (isinstance(value, str) and value.startswith("cuda:")):
        raise UserError(f"params.yaml {key}: {value!r} is not auto, cpu or cuda")
    return value


def host_and_port(value, key) -> str:
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"params.yaml {key}: {value!r} must be host:port, e.g. node0.example.com:29500")
    return value


def part(value, key):
    """A model part: a name (`avg`), or a mapping with its name and options (`{name: cbp, dim: 8192}`)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return dict(value)
    raise UserError(f"params.yaml {key}: {value!r} must be a part name or a mapping with a name and options")


def nested(cls):
    return lambda value, key: parse(cls, value, key)


# The sections.


@dataclass(frozen=True)
class Synthetic:
    """The embedded offline GLD-like dataset (landmark/data/synthetic.py)."""

    seed: int = setting(whole(0))
    num_classes: int = setting(whole(2))
    max_images_per_class: int = setting(whole(1))
    min_images_per_class: int = setting(whole(1))
    tail_exponent: float = setting(positive)
    num_test_images: int = setting(whole(1))
    test_landmark_fraction: float = setting(fraction)
    ignored_fraction: float = setting(fraction)
    num_nonlandmark_images: int = setting(whole(0))  # the non-landmark pool, apart from the test set
    image_size: int = setting(whole(8))
    jpeg_quality: int = setting(whole(1))


@dataclass(frozen=True)
class Kaggle:
    competition: str = setting(one_of("landmark-recognition-2019", "landmark-recognition-2020"))
    shard_base_url: str = setting(text)
    train_shards: int = setting(whole(1))
    test_shards: int = setting(whole(1))
    solution_url: str = setting(url_or_empty)  # empty: no solution file, the submission is not scored


@dataclass(frozen=True)
class Local:
    path: str = setting(text)


@params_section("data")
@dataclass(frozen=True)
class Data:
    source: str = setting(one_of("synthetic", "kaggle", "local"))
    synthetic: Synthetic = setting(nested(Synthetic))
    kaggle: Kaggle = setting(nested(Kaggle))
    local: Local = setting(nested(Local))
    # A folder of photos that show no landmark (searched recursively), for non-landmark suppression and for
    # validation; empty: none (kaggle, local), or the synthetic set's own pool.
    nonlandmarks: str = setting(url_or_empty)


@params_section("filter")
@dataclass(frozen=True)
class Filter:
    min_samples_per_class: int = setting(whole(1))
    max_bad_fraction: float = setting(fraction)
    max_image_pixels: int = setting(whole(1))


@params_section("split")
@dataclass(frozen=True)
class Split:
    dev_fraction: float = setting(fraction)  # of each class the filter kept
    tail_dev_fraction: float = setting(fraction)  # of the classes below the filter (2 images or more): one each
    holdout_fraction: float = setting(fraction)  # of the non-landmark pool, held out for validation
    seed: int = setting(whole(0))


@params_section("pack")
@dataclass(frozen=True)
class Pack:
    shard_size_mb: float = setting(positive)
    seed: int = setting(whole(0))
    max_image_pixels: int = setting(whole(1))


@params_section("train")
@dataclass(frozen=True)
class Train:
    """What every variant's training shares and its result depends on."""

    seed: int = setting(whole(0))
    precision: str = setting(one_of("auto", "bf16", "fp32"))  # auto: bf16 autocast on a GPU, fp32 on the CPU
    decode: str = setting(one_of("worker", "device"))  # PIL in the loader workers, or nvJPEG on a GPU


@params_section("runtime")
@dataclass(frozen=True)
class Runtime:
    """How fast this machine runs the pipeline; no stage depends on these (module docstring)."""

    device: str = setting(device)
    gpus: int | str = setting(auto_or(whole(1), "a whole number >= 1"))
    num_workers: int | str = setting(auto_or(whole(0), "a whole number >= 0"))
    compile: bool | str = setting(one_of("auto", True, False))
    nodes: int = setting(whole(1))  # machines training together under torchrun
    node_rank: int = setting(whole(0))  # this machine's place among them; node 0 writes the outputs
    rendezvous: str = setting(host_and_port)  # node 0's host:port, where the nodes meet
    log_every: int = setting(whole(1))
    eval_every: int = setting(whole(1))
    checkpoint_every: int = setting(whole(1))
    inference_batch_size: int = setting(whole(1))

    def __post_init__(self):
        if self.node_rank >= self.nodes:
            raise UserError(
                f"params.yaml runtime.node_rank: {self.node_rank} must be below runtime.nodes ({self.nodes})"
            )


def scale_range(value, key) -> tuple:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(positive(v, key) for v in value)):
        raise UserError(f"params.yaml {key}: {value!r} must be [smallest, largest], two positive numbers")
    if value[0] > value[1]:
        raise UserError(f"params.yaml {key}: {value!r} must be [smallest, largest]; swap them")
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentation, drawn per image on the device (landmark.data.loading.augmentation_matrices)."""

    translate: float = setting(fraction)  # a random shift of up to this share of the side
    scale: tuple = setting(scale_range)  # a random zoom in this range
    flip: float = setting(fraction)  # the probability of a horizontal flip


@dataclass(frozen=True)
class Variant:
    """One row of the results table: backbone → attention → pooling → neck → head, its loss, and how it is
    trained."""

    backbone: str = setting(text)
    min_class_images: int | str = setting(one_of_or("filter", whole(1), "filter or a whole number >= 1"))
    pooling: str | dict = setting(part)
    attention: str | dict = setting(part)
    neck: str | dict = setting(part)
    head: str | dict = setting(part)
    loss: str | dict = setting(part)
    pretrained: str = setting(text)  # none | hub | a package of INSTALLED_WEIGHTS | a path to a local weights file
    frozen_tensors: int = setting(whole(0))
    image_size: int = setting(whole(1))
    batch_size: int = setting(whole(1))
    lr: float = setting(positive)
    steps: int = setting(whole(1))
    augmentation: Augmentation = setting(nested(Augmentation))


@params_section("evaluate")
@dataclass(frozen=True)
class Evaluate:
    paper_batch_size: int = setting(whole(1))  # the paper's GAP was averaged over mini-batches of 64


@params_section("saliency")
@dataclass(frozen=True)
class Saliency:
    images: int = setting(whole(1))
    seed: int = setting(whole(0))


def scales(value, key) -> tuple:
    positives = [item for item in value if type(item) in (int, float) and item > 0] if isinstance(value, list) else []
    if not value or len(positives) < len(value):
        raise UserError(f"params.yaml {key}: {value!r} must be a list of positive numbers, e.g. [0.7071, 1, 1.4142]")
    if len(set(value)) < len(value):
        raise UserError(f"params.yaml {key}: {value!r} names a scale twice")
    return tuple(float(item) for item in value)


def names(value, key) -> tuple:
    if not (isinstance(value, list) and value and all(isinstance(item, str) and item for item in value)):
        raise UserError(f"params.yaml {key}: {value!r} must be a list of names")
    if len(set(value)) < len(value):
        raise UserError(f"params.yaml {key}: {value!r} names one twice")
    return tuple(value)


def mapping_of_mappings(value, key) -> dict:
    """name -> its options (a mapping; empty or none: no options)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        options is None or isinstance(options, dict) for options in value.values()
    ):
        raise UserError(f"params.yaml {key}: {value!r} must map each name to a mapping of its options")
    return {name: dict(options or {}) for name, options in value.items()}


def positives(value, key) -> tuple:
    if not isinstance(value, list) or not value:
        raise UserError(f"params.yaml {key}: {value!r} must be a list of positive numbers")
    return tuple(positive(item, key) for item in value)


@dataclass(frozen=True)
class Ensemble:
    variants: tuple = setting(names)  # of embed.variants: their whitened embeddings, concatenated
    weights: tuple = setting(positives)  # one per variant, in their order


def ensembles(value, key) -> dict:
    """name -> Ensemble, each weight one of its variants'."""
    built = {
        name: parse(Ensemble, options, f"{key}.{name}") for name, options in mapping_of_mappings(value, key).items()
    }
    for name, ensemble in built.items():
        if len(ensemble.weights) != len(ensemble.variants):
            raise UserError(f"params.yaml {key}.{name}.weights: give one positive weight per variant, in their order")
    return built


@params_section("embed")
@dataclass(frozen=True)
class Embed:
    variants: tuple = setting(names)  # the variants recognition compares: embed, index, recognize for each
    scales: tuple = setting(scales)  # each image is looked at resized by each; the descriptor is their mean
    flip: bool = setting(one_of(True, False))  # and each look mirrored too
    ensembles: dict = setting(ensembles)  # name -> variants and weights: recognised like a variant (stages.ensemble)

    @property
    def recognitions(self) -> tuple:
        """What the recognize stages compare: every variant, then every ensemble."""
        return self.variants + tuple(self.ensembles)


@params_section("local_features")
@dataclass(frozen=True)
class LocalFeatures:
    """SIFT features of the stored photos, for the verify step (landmark.recognition.verification)."""

    max_side: int = setting(whole(16))  # pixels: a larger photo is shrunk to this long side first
    max_features: int = setting(whole(4))  # the strongest keypoints kept per photo


@params_section("index")
@dataclass(frozen=True)
class Index:
    whitening: str = setting(one_of("none", "pca"))  # PCA whitening learned on the gallery (recognition/search.py)
    whitening_dims: int = setting(whole(1))  # the axes it keeps
    exact_below: int = setting(whole(1))  # fewer gallery images: exact search (faiss IndexFlatIP)
    factory: str = setting(text)  # the approximate index from there on, as a faiss index_factory string


@params_section("recognize")
@dataclass(frozen=True)
class Recognize:
    neighbours: int = setting(whole(1))  # k nearest gallery images that vote
    nprobe: int = setting(whole(1))  # inverted lists an approximate index visits per query
    refine_factor: int = setting(whole(1))  # a refining index re-ranks this many candidates per neighbour
    blend_weight: float = setting(positive)  # the classifier's vote in a blend, times its probability
    steps: dict = setting(mapping_of_mappings)  # each step's options (landmark.recognition.steps checks them)
    methods: tuple = setting(names)  # each a row of the results: a base and its steps (landmark.recognition.method)
    nonlandmark_share: float = setting(fraction)  # of the test set: the validation GAP weighs its non-landmarks to it


@params_section("submission")
@dataclass(frozen=True)
class Submission:
    variant: str = setting(text)  # best (by validation GAP) or one of embed.variants
    method: str = setting(text)  # best (by validation GAP) or one of recognize.methods
    min_confidence: float | None = setting(none_or_number)  # below it, the prediction is left empty


def variant_settings(params: dict, name: str) -> Variant:
    """variants.NAME on top of variant_defaults, checked."""
    if name not in variant_names(params):
        raise UserError(f"params.yaml variants: no variant {name!r}; choose one of {', '.join(params['variants'])}")
    defaults, own = params.get("variant_defaults") or {}, params["variants"][name] or {}
    for key, mapping in (("variant_defaults", defaults), (f"variants.{name}", own)):
        if not isinstance(mapping, dict):
            raise UserError(f"params.yaml {key}: expected a mapping of variant params")
    return parse(Variant, defaults | own, f"variants.{name}")


def section(params: dict, name: str):
    """params.yaml's section `name`, typed (a registered section)."""
    if name not in params:
        raise UserError(f"params.yaml {name}: missing section")
    return parse(SECTIONS[name], params[name], name)


def variant_names(params: dict) -> list:
    variants = params.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise UserError("params.yaml variants: expected a mapping of variant names to their params")
    return list(variants)


@dataclass(frozen=True)
class Settings:
    """Every section of params.yaml, typed, and every variant with its defaults applied."""

    sections: dict
    variants: dict

    def __getattr__(self, name):
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def parse_params(params: dict) -> Settings:
    """Check every value of params.yaml (not the machine: see landmark.checks); raises a UserError naming the key."""
    unknown = [key for key in params if key not in SECTIONS and key not in ("variants", "variant_defaults")]
    if unknown:
        raise UserError(f"params.yaml {unknown[0]}: unknown section; expected {', '.join(SECTIONS)}, variants")
    sections = {name: section(params, name) for name in SECTIONS}
    variants = {name: variant_settings(params, name) for name in variant_names(params)}
    embedded = sections["embed"].variants
    unknown = [name for name in embedded if name not in variants]
    if unknown:
        raise UserError(
            f"params.yaml embed.variants: {unknown[0]!r} is not in variants; choose from {', '.join(variants)}"
        )
    for name, ensemble in sections["embed"].ensembles.items():
        if name in embedded:
            raise UserError(f"params.yaml embed.ensembles.{name}: a variant's name; name the ensemble otherwise")
        for variant in ensemble.variants:
            if variant not in embedded:
                raise UserError(
                    f"params.yaml embed.ensembles.{name}.variants: {variant!r} is not in embed.variants; add it there, "
                    f"or take {name} out (-S '~embed.ensembles.{name}')"
                )
    for key, where, choices in (
        ("variant", "embed.variants", sections["embed"].recognitions),  # an ensemble is a variant there
        ("method", "recognize.methods", sections["recognize"].methods),
    ):
        chosen = getattr(sections["submission"], key)
        if chosen != "best" and chosen not in choices:
            raise UserError(
                f"params.yaml submission.{key}: {chosen!r} is not in {where}; use best or one of {', '.join(choices)}"
            )
    return Settings(sections, variants)


def nonlandmark_shortfalls(data: Data, split: Split) -> dict:
    """What the run's non-landmarks will lack, told from the settings before any photo is read: "pool" (none to
    search, for the suppression steps) and "holdout" (none held out, for a validation that asks about
    non-landmarks), each as (the params key to blame, why, the fix). A folder's photos are counted by the split
    stage, which stops where a part it should fill comes out empty."""
    folder_fix = "point data.nonlandmarks at a folder of photos without landmarks"
    if data.source == "synthetic" and not data.nonlandmarks:
        total = data.synthetic.num_nonlandmark_images  # known: the generator draws exactly this many
    elif data.nonlandmarks or (data.source == "local" and (Path(data.local.path) / "nonlandmark.csv").is_file()):
        total = None  # a folder of photos: at least one, until the split stage counts them
    else:
        total = 0
    if total == 0:
        why = "no non-landmark pool" + (
            " (data.synthetic.num_nonlandmark_images is 0)" if data.source == "synthetic" else " is given"
        )
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
