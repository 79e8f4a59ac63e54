"""Every params.yaml setting the training and prediction stages use, checked in seconds: by `landmark check`,
and by the download stage before a Kaggle download that takes hours, so a mistake in a variant does not wait
for the train stage to show."""

import torch

from landmark.distributed import split_batch, training_processes
from landmark.errors import UserError
from landmark.models import check_variant
from landmark.params import section
from landmark.predict import decode_mode, device_setting, loader_workers, pick_device
from landmark.train import autocast_dtype, compile_wanted, will_compile


def check_params(params: dict, this_machine: bool = True) -> int:
    """Raise a UserError naming the first wrong key; returns how many variants were checked. With this_machine,
    also that this machine has what the settings ask for (a GPU for `device: cuda`, as many GPUs as `gpus`);
    without, the values alone, for a machine that only prepares the data."""
    variants = section(params, "variants")
    if not isinstance(variants, dict) or not variants:
        raise UserError("params.yaml variants: expected a mapping of variant names to their params")
    keys = ("device", "precision", "compile", "decode", "gpus", "num_workers")
    train = {key: section(params, "train", key) for key in keys}
    device = checked_device(train["device"], this_machine)
    autocast_dtype(train["precision"], device)
    if this_machine:
        will_compile(train["compile"], device)  # compiles a tiny function where compile is wanted
    else:
        compile_wanted(train["compile"], device)
    decode_mode(train["decode"])
    processes = training_processes(train["gpus"], device)
    loader_workers(train["num_workers"], device, processes)
    for name, variant in variants.items():
        where = f"variants.{name}"
        if not isinstance(variant, dict):
            raise UserError(f"params.yaml {where}: expected a mapping of the variant's params")
        check_variant(variant, num_classes=2, where=where)
        split_batch(int(variant["batch_size"]), processes)
    for stage in ("evaluate", "submission"):
        checked_device(section(params, stage, "device"), this_machine)
        decode_mode(section(params, stage, "decode"))
        loader_workers(section(params, stage, "num_workers"), torch.device("cpu"), stage=stage)  # the value
    check_submission_variant(section(params, "submission", "variant"), variants)
    return len(variants)


def checked_device(setting, this_machine: bool) -> torch.device:
    """The device a `device` setting picks here; without this_machine, the value alone, taken as a CPU would."""
    if this_machine:
        return pick_device(setting)
    device_setting(setting)
    return torch.device("cpu")


def check_submission_variant(requested: str, variants) -> None:
    if requested != "best" and requested not in variants:
        raise UserError(
            f"params.yaml submission.variant: {requested!r} is not in variants; use best or one of {', '.join(variants)}"
        )
