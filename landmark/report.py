"""The results table (the paper's Figure 5, with its numbers beside ours) and the training curves (Figure 4)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from landmark.files import atomic_path, write_text  # noqa: E402

# Figure 5 of Yep & Chen (2019): dev-set GAP (averaged per mini-batch) and final loss.
PAPER_RESULTS = {
    "resnet50": ("ResNet50", 0.241, 3.183),
    "xception": ("Xception only", 0.674, 1.301),
    "xception_spatial": ("Xception + SpatialAttention", 0.119, 3.079),
    "xception_cbp": ("Xception + BilinearPooling", 0.812, 0.908),
    "xception_cbp_selfattn": ("Xception + BilinearPooling + SelfAttention", 0.841, 0.932),
}


def _number(value):
    return "—" if value is None else f"{value:.3f}"


def ordering_note(metrics: dict) -> str:
    """Say plainly how our ranking of the paper's rows compares with the paper's."""
    rows = [name for name in PAPER_RESULTS if name in metrics]
    if len(rows) < 2:
        return ""
    ours = sorted(rows, key=lambda name: -metrics[name]["gap"])
    paper = sorted(rows, key=lambda name: -PAPER_RESULTS[name][1])
    text = f"Paper's rows by dev GAP — ours: {' > '.join(ours)}; the paper's: {' > '.join(paper)}.\n"
    flipped = [
        f"{first} vs {second}"
        for index, first in enumerate(paper)
        for second in paper[index + 1 :]
        if metrics[first]["gap"] < metrics[second]["gap"]
    ]
    if flipped:
        text += f"Pairs ranked the other way round from the paper: {', '.join(flipped)}.\n"
    else:
        text += "Every pair is ranked as in the paper.\n"
    return text


def results_table(metrics: dict, submission: dict | None) -> str:
    """Markdown (the paper's Figure 5): one row per variant, ours beside the paper's; how the rankings compare;
    then the submission and its test GAP."""
    lines = [
        "| variant | paper's model | dev GAP (Kaggle) | dev GAP (per batch, paper's) | dev loss | top-1 accuracy "
        "| paper GAP (per batch) | paper loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best = max(metrics, key=lambda name: metrics[name]["gap"]) if metrics else None
    for name, result in metrics.items():
        title, paper_gap, paper_loss = PAPER_RESULTS.get(name, ("— (extra row)", None, None))
        shown = f"**{name}**" if name == best else name
        lines.append(
            f"| {shown} | {title} | {_number(result['gap'])} | {_number(result['batch_gap'])} | {_number(result['loss'])} "
            f"| {_number(result['accuracy'])} | {_number(paper_gap)} | {_number(paper_loss)} |"
        )
    text = "# Results on the dev set\n\n" + "\n".join(lines) + "\n\nThe best variant by dev GAP is in bold. "
    text += "The paper's numbers are on GLDv2 with ImageNet weights; ours are from this run's data and params.\n\n"
    text += ordering_note(metrics)
    text += "\nCurves (Figure 4): `curves.png`. Saliency maps (Figure 6): `saliency.png`.\n"
    if submission:
        text += f"\n## Submission\n\n`{submission['variant']}` predicted {submission['predicted']} of {submission['test_images']} test images."
        if "gap" in submission:
            splits = ", ".join(f"{key} {submission[key]:.4f}" for key in ("public", "private") if key in submission)
            text += (
                f" Test GAP against the solution file: {submission['gap']:.4f}"
                + (f" ({splits})" if splits else "")
                + "."
            )
        text += "\n"
    return text


def _smooth(values: pd.Series, weight: float = 0.9) -> pd.Series:
    return values.ewm(alpha=1 - weight).mean()


def plot_curves(plots_dir, variants, out_png) -> None:
    """Train loss and batch GAP (smoothed), dev loss and GAP, one line per variant."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        ("train", "loss", axes[0, 0]),
        ("train", "batch_gap", axes[0, 1]),
        ("dev", "loss", axes[1, 0]),
        ("dev", "gap", axes[1, 1]),
    ]
    for kind, column, axis in panels:
        for name in variants:
            path = Path(plots_dir) / kind / f"{name}.csv"
            if not path.exists():
                continue
            curve = pd.read_csv(path)
            values = _smooth(curve[column]) if kind == "train" else curve[column]
            axis.plot(curve["step"], values, label=name, marker="" if kind == "train" else "o")
        label = {"loss": "loss", "gap": "GAP", "batch_gap": "batch GAP"}[column]
        axis.set_title(f"{kind} {label}" + (" (smoothed)" if kind == "train" else ""))
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[0, 0].legend()
    figure.tight_layout()
    with atomic_path(out_png) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def write_report(metrics_dir, plots_dir, submission_json, variants, out_dir) -> dict:
    metrics = {}
    for name in variants:
        path = Path(metrics_dir) / f"{name}.json"
        if path.exists():
            metrics[name] = json.loads(path.read_text())
    submission = json.loads(Path(submission_json).read_text()) if Path(submission_json).exists() else None
    write_text(Path(out_dir) / "results.md", results_table(metrics, submission))
    plot_curves(plots_dir, variants, Path(out_dir) / "curves.png")
    return metrics
