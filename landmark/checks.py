"""`landmark check`: every setting of params.yaml, in seconds, before a long run. The values first
(landmark.settings, as every stage checks them), then the recognition methods against the data's non-landmarks
(landmark.recognition.method.check_methods: no step runs without what it needs), then every variant's model built
at its image size, then, on the machine that trains, what the settings ask of it (a GPU for `device: cuda`, as
many GPUs as `gpus`, a compiler for `compile: true`)."""

from landmark.recognition.method import check_methods
from landmark.settings import nonlandmark_shortfalls, parse_params


def check_params(params: dict, this_machine: bool = True, models: bool = True) -> int:
    """Raise a UserError naming the first wrong key; returns how many variants were built. Without this_machine,
    the values and the models alone, for a machine that only prepares the data (its device taken as a CPU's, and
    `gpus` as the number it says); without models, the values and the recognition methods (no torch imported)."""
    settings = parse_params(params)
    check_methods(settings, nonlandmark_shortfalls(settings.data, settings.split))
    if not models:
        return 0
    import torch  # imported here: the check without models runs in a second, without torch

    from landmark.distributed import split_batch, training_processes
    from landmark.models import check_builds
    from landmark.runtime import pick_device, will_compile

    runtime = settings.runtime
    device = pick_device(runtime.device) if this_machine else torch.device("cpu")
    if this_machine:
        will_compile(runtime.compile, device)  # compiles a tiny function where compile is wanted
        processes = training_processes(runtime.gpus, device)
    else:
        processes = 1 if runtime.gpus == "auto" else runtime.gpus
    for name, variant in settings.variants.items():
        check_builds(variant, where=f"variants.{name}")
        split_batch(variant.batch_size, processes * runtime.nodes)
    return len(settings.variants)
