"""The rehearsal of GLDv2 at several fractions: every stage's cost measured, its growth fitted, carried to 1×.

Usage: python benchmarks/rehearsal.py [--fractions F …] [--work DIR] [--set KEY=VALUE …] [--until STAGE]
                                    [--report-only] [--repro]

For each fraction it copies this working tree into a new git repository at DIR/f<fraction>, applies
profiles/rehearsal.yaml and the fraction to params.yaml (as `dvc exp run -S` would), builds the rehearsal's mirror
(not timed: at 1× there is no mirror to build), then runs each stage, after those it needs, as `dvc repro` would:
its command, then `dvc commit` of its outputs. For each stage it records the command's wall seconds and the peak
resident memory of its whole process tree (sampled every 0.1 s: the stage and every process it starts; all of it,
and the anonymous part, without the pages mapped from files that the kernel can drop), the files and bytes of its
outputs (from dvc.lock), and the seconds `dvc commit` spends hashing them into the cache. Per fraction it writes
DIR/f<fraction>.json; at the end it prints one table per figure, and the fit of each stage's cost against the
rehearsal's train images n: the exponent k of cost ∝ n^k (least squares on log-log over every run, and between the
two largest) and the cost carried to GLDv2's 4,132,914 (a + b·n fitted, or the power law from the largest run where
a k is above 1.1, which is a defect to mend). Last, the train and embed stages carried to 1× on one H100, from the
speeds measured there (--h100-train, --h100-embed) and the paper profile's training length.
--repro runs each fraction as a user does instead, through one `dvc repro`, and records each stage's span of its
output, memory and GPU memory, or where it failed (benchmarks/gpu_rehearsal.sh runs it on a GPU).
Run alone: a stage timed beside other work takes longer. Needs the project's environment active.
"""

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from landmark.data import rehearsal
from landmark.profiles import set_param_flags
from landmark.settings import load_settings

ROOT = Path(__file__).parents[1]


def tree_memory(process: psutil.Process) -> np.ndarray:
    """Resident bytes of a process and every process below it, now: all of it, and its anonymous part (less the
    pages mapped from files, such as memory-mapped embeddings, which the kernel can drop and read again)."""
    total = np.zeros(2, dtype=np.int64)
    for member in [process, *process.children(recursive=True)]:
        try:
            memory = member.memory_info()
        except psutil.Error:  # ended between the listing and the reading
            continue
        total += (memory.rss, memory.rss - memory.shared)
    return total


def gpu_memory() -> int:
    """Bytes in use on the first GPU now, every process's (nvidia-smi's reading); 0 without one."""
    if not shutil.which("nvidia-smi"):
        return 0
    reading = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"],
        capture_output=True,
        text=True,
    )
    return int(reading.stdout.split()[0]) * 2**20 if reading.returncode == 0 and reading.stdout.strip() else 0


def measured(command, cwd: Path, check: bool = True) -> dict:
    """Run a command, its output read as it comes: its wall seconds, its output with the second each line came at,
    and the memory of its process tree sampled every 0.1 s (resident, anonymous, and the GPU's each second)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, shell=isinstance(command, str), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    samples, watched = [], psutil.Process(process.pid)

    def watch():
        gpu = 0
        while process.poll() is None:
            try:
                resident = tree_memory(watched)
            except psutil.Error:
                return
            gpu = gpu_memory() if len(samples) % 10 == 0 else gpu
            samples.append((time.perf_counter() - started, *resident, gpu))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines = [(time.perf_counter() - started, line) for line in process.stdout]
    process.wait()
    watcher.join()
    output = "".join(line for _, line in lines)
    if check and process.returncode:
        sys.exit(f"{command} failed in {cwd}:\n{output[-3000:]}")
    peak = np.max([sample[1:] for sample in samples], axis=0) if samples else np.zeros(3, dtype=np.int64)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss": int(peak[0]),
        "peak_anon": int(peak[1]),
        "peak_gpu": int(peak[2]),
        "output": output,
        "lines": lines,
        "samples": samples,
        "returncode": process.returncode,
    }


def planned_stages(repo: Path) -> list:
    """(name, command) of every stage of the pipeline, each after the stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo)) as project:
        order = reversed(list(nx.topological_sort(project.index.graph)))  # edges point at what a stage needs
        return [(stage.name, stage.cmd) for stage in order]


def outputs_of(repo: Path, stage: str) -> dict:
    """Files and bytes of a stage's outputs, as dvc.lock records them."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    outs = lock.get("outs", [])
    return {
        "files": sum(out.get("nfiles", 1) for out in outs),
        "bytes": sum(out.get("size", 0) for out in outs),
    }


def working_tree_copy(repo: Path) -> None:
    """This checkout's working tree, uncommitted changes included, committed as a new git repository at repo: the
    files git tracks or does not ignore. A checkout without git's history (a device machine's copy) is copied whole,
    and its .gitignore leaves out of the commit what it would have left out here."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True
        ).stdout.split(b"\0")
        for name in (entry.decode() for entry in listed if entry):
            if (ROOT / name).is_file():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, repo / name)
    else:
        shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".whl", "__pycache__", "gpu_out"))
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=rehearsal", "-c", "user.email=rehearsal@landmark.invalid", "commit", "-qm", "rehearsal"],
    ):
        subprocess.run(["git", *command], cwd=repo, check=True)


def overridden_copy(repo: Path, overrides: list) -> None:
    """This working tree as a new git repository at repo (anything there before removed), with overrides applied
    to its params.yaml as `dvc exp run -S` applies them."""
    from dvc.utils.hydra import apply_overrides

    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    working_tree_copy(repo)
    apply_overrides(repo / "params.yaml", overrides)


def prepare(fraction: float, work: Path, overrides: list) -> Path:
    """This working tree at work/f<fraction> with the rehearsal profile, this fraction and the overrides in
    params.yaml, and the rehearsal's mirror built."""
    repo = work / f"f{fraction:g}"
    flags = set_param_flags(ROOT / "profiles/rehearsal.yaml", ROOT / "params.yaml")[1::2]
    overridden_copy(repo, flags + [f"data.rehearsal.fraction={fraction}", *overrides])
    settings = load_settings(repo / "params.yaml").data.rehearsal
    started = time.perf_counter()
    _, manifest = rehearsal.prepare_mirror(settings, repo / "data/downloads/rehearsal")
    print(f"f={fraction:g}: mirror of {manifest['train_images']} train images in {time.perf_counter() - started:.0f} s")
    return repo


def rehearse(fraction: float, work: Path, overrides: list, until: str | None) -> dict:
    repo = prepare(fraction, work, overrides)
    stages, started = {}, time.perf_counter()
    planned = planned_stages(repo)
    names = [name for name, _ in planned]
    for name, command in planned[: names.index(until) + 1 if until else None]:
        figures = measured(command, repo)
        hashed = measured(f"dvc commit -f -q {name}", repo)
        stages[name] = {
            "seconds": round(figures["seconds"], 2),
            "peak_rss": figures["peak_rss"],
            "peak_anon": figures["peak_anon"],
            "dvc_seconds": round(hashed["seconds"], 2),
        } | outputs_of(repo, name)
        last = figures["output"].strip().splitlines()[-1:] or [""]
        memory = f"{figures['peak_rss'] / 2**30:.2f} GiB ({figures['peak_anon'] / 2**30:.2f} anonymous)"
        print(f"  {name}: {figures['seconds']:.1f} s, {memory}; {last[0][:150]}")
    result = finished(repo, fraction, time.perf_counter() - started) | {"stages": stages}
    (work / f"f{fraction:g}.json").write_text(json.dumps(result, indent=1))
    print(f"f={fraction:g}: {result['train_images']} train images, the pipeline in {result['seconds'] / 60:.1f} min")
    return result


def finished(repo: Path, fraction: float, seconds: float) -> dict:
    """The figures of a run that every mode records: its size, wall time and submission."""
    train = 0
    if (repo / "data/raw/train.csv").exists():
        with open(repo / "data/raw/train.csv") as rows:
            train = sum(1 for _ in rows) - 1
    submission = repo / "reports/submission.json"
    scored = json.loads(submission.read_text()) if submission.exists() else {}
    return {"fraction": fraction, "train_images": train, "seconds": seconds, "submission": scored}


def through_repro(fraction: float, work: Path, overrides: list) -> dict:
    """The rehearsal as a user runs the pipeline: one `dvc repro`, each stage's span timed (stage_spans). A failed
    run is recorded too: the stage it failed in and the end of its output. Writes work/repro-f<fraction>.json and
    the whole output to work/repro-f<fraction>.log."""
    repo = prepare(fraction, work, overrides)
    run = measured([sys.executable, "-m", "dvc", "repro"], repo, check=False)
    (work / f"repro-f{fraction:g}.log").write_text(run["output"])
    stages = stage_spans(run)
    result = finished(repo, fraction, run["seconds"]) | {"mode": "repro", "stages": stages}
    result |= {"returncode": run["returncode"], "gpu": gpu_name()}
    if run["returncode"]:
        result |= {"failed_in": list(stages)[-1] if stages else "before any stage", "tail": run["output"][-4000:]}
    (work / f"repro-f{fraction:g}.json").write_text(json.dumps(result, indent=1))
    print_spans(stages)
    outcome = f"failed in {result['failed_in']}" if run["returncode"] else f"test GAP {result['submission'].get('gap')}"
    size = f"{result['train_images']} train images, {run['seconds'] / 60:.1f} min"
    print(f"f={fraction:g}, dvc repro on {result['gpu'] or 'the CPU'}: {size}, {outcome}")
    return result


def stage_spans(run: dict) -> dict:
    """Each stage of a measured `dvc repro`: its seconds, from the line DVC prints as it starts the stage to the next
    one (its command and DVC's hashing of its outputs), and the peak memory of that span, the GPU's included."""
    starts = [(second, line.split("'")[1]) for second, line in run["lines"] if line.startswith("Running stage '")]
    spans = zip(starts, [second for second, _ in starts[1:]] + [run["seconds"]], strict=True)
    stages = {}
    for (begin, name), end in spans:
        during = [sample[1:] for sample in run["samples"] if begin <= sample[0] <= end] or [(0, 0, 0)]
        peak = np.max(during, axis=0)
        stages[name] = {"seconds": round(end - begin, 2), "peak_rss": int(peak[0]), "peak_anon": int(peak[1])}
        stages[name]["peak_gpu"] = int(peak[2])
    return stages


def print_spans(stages: dict) -> None:
    print("\n| stage | s | peak GiB (anonymous) | GPU GiB |\n|---|---|---|---|")
    for name, figures in stages.items():
        memory = f"{figures['peak_rss'] / 2**30:.2f} ({figures['peak_anon'] / 2**30:.2f})"
        print(f"| {name} | {figures['seconds']:.1f} | {memory} | {figures['peak_gpu'] / 2**30:.1f} |")


def gpu_name() -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "--id=0"]
    return subprocess.run(query, capture_output=True, text=True).stdout.strip()


def growth(sizes, values, full: float) -> tuple:
    """(k of value ∝ size^k over every run, k between the two largest runs, value carried to `full`): a + b·size
    fitted where neither k is above 1.1, else the power law of the larger k from the largest run."""
    sizes, values = np.asarray(sizes, float), np.maximum(np.asarray(values, float), 1e-9)
    if len(set(sizes)) < 2:
        return float("nan"), float("nan"), float("nan")
    k = np.polyfit(np.log(sizes), np.log(values), 1)[0]
    last = np.log(values[-1] / values[-2]) / np.log(sizes[-1] / sizes[-2])
    if max(k, last) > 1.1:
        return k, last, values[-1] * (full / sizes[-1]) ** max(k, last)
    slope, intercept = np.polyfit(sizes, values, 1)
    return k, last, max(intercept + max(slope, 0) * full, values[-1])


def report(results: list, full: int) -> None:
    results = sorted(results, key=lambda result: result["train_images"])
    sizes = [result["train_images"] for result in results]
    names = list(results[-1]["stages"])
    figures = (
        ("seconds", "wall s", 1),
        ("peak_rss", "peak GiB", 2**30),
        ("peak_anon", "peak anonymous GiB", 2**30),
        ("files", "output files", 1),
        ("bytes", "output GiB", 2**30),
        ("dvc_seconds", "dvc commit s", 1),
    )
    for key, title, unit in figures:
        print(f"\n| {title} | " + " | ".join(f"n={size:,}" for size in sizes) + " | k | k, last two | at 1× |")
        print("|---" * (len(sizes) + 4) + "|")
        for name in names:
            values = [result["stages"].get(name, {}).get(key, 0) / unit for result in results]
            k, last, carried = growth(sizes, values, full)
            flag = " **(> 1.1)**" if max(k, last) > 1.1 else ""
            cells = " | ".join(f"{value:,.2f}" for value in values)
            print(f"| {name} | {cells} | {k:.2f} | {last:.2f}{flag} | {carried:,.1f} |")
    print("\n| | " + " | ".join(f"n={size:,}" for size in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    print("| the pipeline, min | " + " | ".join(f"{result['seconds'] / 60:.1f}" for result in results) + " |")
    gaps = [f"{result['submission'].get('gap', float('nan')):.4f}" for result in results]
    print("| the submission's test GAP | " + " | ".join(gaps) + " |")


def on_one_gpu(repo: Path, names: list, speeds: dict, embed_speed: float) -> None:
    """The train and embed stages carried to 1× on one H100 from the speeds measured there (docs/benchmarks.md):
    training as the paper profile sets it (steps × batch), embedding every image GLDv2's recognition uses once
    (each further look costs about as much again, times its scale squared)."""
    settings = load_settings(repo / "params.yaml")
    paper = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())["variant_defaults"]
    trained = paper["steps"] * paper["batch_size"]
    gldv2 = settings.data.rehearsal.gldv2
    embedded = gldv2.images + gldv2.test_images + settings.data.rehearsal.nonlandmark_images
    print("\n| at 1× on one H100 | hours | from |\n|---|---|---|")
    for name in names:
        stage, _, variant = name.partition("@")
        if stage == "train":
            backbone = settings.variants[variant].backbone
            if backbone not in speeds:
                print(f"| {name} | — | no H100 figure for {backbone} |")
                continue
            hours = trained / speeds[backbone] / 3600
            print(
                f"| {name} | {hours:.1f} | {trained:,} images (paper: steps × batch) at {speeds[backbone]:,.0f} img/s |"
            )
        elif stage == "embed":
            hours = embedded / embed_speed / 3600
            print(f"| {name} | {hours:.2f} a look | {embedded:,} images at {embed_speed:,.0f} img/s |")


def backbone_speed(text: str) -> tuple:
    """BACKBONE=IMG_PER_S, as --h100-train takes it."""
    backbone, _, speed = text.partition("=")
    try:
        return backbone, float(speed)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected backbone=img/s, e.g. resnet50=2675") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0025, 0.005, 0.0125, 0.025])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rehearsal"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="another -S override")
    parser.add_argument("--until", help="the last stage to run (e.g. pack: the data stages alone)")
    parser.add_argument("--report-only", action="store_true", help="only print the tables of the runs in --work")
    parser.add_argument(
        "--repro", action="store_true", help="each fraction through one `dvc repro`, as a user runs it (item 6's run)"
    )
    parser.add_argument(
        "--h100-train",
        nargs="*",
        type=backbone_speed,
        default=[("resnet50", 2675.0), ("legacy_xception", 5549.0)],
        help="backbone=img/s trained end to end on one H100 (docs/benchmarks.md: Training speed)",
    )
    parser.add_argument("--h100-embed", type=float, default=5007, help="img/s embedded on one H100 (Inference)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.repro and (args.until or args.report_only):
        parser.error("--repro runs the whole pipeline through dvc repro: leave out --until and --report-only")
    if args.repro:
        failed = [through_repro(fraction, args.work, args.overrides)["returncode"] for fraction in args.fractions]
        sys.exit(1 if any(failed) else 0)
    if not args.report_only:
        for fraction in args.fractions:
            rehearse(fraction, args.work, args.overrides, args.until)
    results = sorted((json.loads(path.read_text()) for path in args.work.glob("f*.json")), key=lambda r: r["fraction"])
    report(results, load_settings(ROOT / "params.yaml").data.rehearsal.gldv2.images)
    on_one_gpu(
        args.work / f"f{results[-1]['fraction']:g}", list(results[-1]["stages"]), dict(args.h100_train), args.h100_embed
    )


if __name__ == "__main__":
    main()
