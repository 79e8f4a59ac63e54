"""The results tables (the paper's Figure 5, with its numbers beside ours, and recognition methods × variants),
the training curves (Figure 4) and what retrieval found for a fixed set of queries (reports/retrieval.png)."""

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from landmark.data.layout import read_csv  # noqa: E402
from landmark.data.shards import image_reader  # noqa: E402
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


def pretraining_note(metrics: dict, variants: dict) -> str:
    """A sentence per pretrained row with a twin trained from scratch (the same variant but for its weights and
    the tensors frozen with them): what the pretrained weights changed in dev GAP."""
    sentences = []
    for name, variant in variants.items():
        if variant.pretrained == "none" or name not in metrics:
            continue
        for twin, scratch in variants.items():
            weighted = scratch.model_copy(
                update={"pretrained": variant.pretrained, "frozen_tensors": variant.frozen_tensors}
            )
            if scratch.pretrained == "none" and twin in metrics and weighted == variant:
                sentences.append(
                    f"Pretraining ({variant.pretrained}, the first {variant.frozen_tensors} tensors frozen) took "
                    f"{variant.backbone}'s dev GAP from {_number(metrics[twin]['gap'])} ({twin}, from scratch) to "
                    f"{_number(metrics[name]['gap'])} ({name})."
                )
    return "".join(f"{sentence}\n" for sentence in sentences)


def results_table(metrics: dict, variants: dict | None = None) -> str:
    """Markdown (the paper's Figure 5): one row per variant, ours beside the paper's; how the rankings compare."""
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
            f"| {shown} | {title} | {_number(result['gap'])} | {_number(result['batch_gap'])} "
            f"| {_number(result['loss'])} "
            f"| {_number(result['accuracy'])} | {_number(paper_gap)} | {_number(paper_loss)} |"
        )
    text = "# Results on the dev set\n\n" + "\n".join(lines) + "\n\nThe best variant by dev GAP is in bold. "
    text += "The paper's numbers are on GLDv2 with ImageNet weights; ours are from this run's data and params.\n\n"
    text += ordering_note(metrics) + pretraining_note(metrics, variants or {})
    text += "\nCurves (Figure 4): `curves.png`. Saliency maps (Figure 6): `saliency.png`.\n"
    return text


def gallery_table(recognitions: dict) -> str:
    """Markdown: per variant, the classes its classifier learned and those only its gallery knows, and what the
    gallery photos (data.gallery_photos) add."""
    lines = [
        "| variant | gallery images | of them gallery photos | classes | learned | only in the gallery "
        "| only in gallery photos |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, figures in recognitions.items():
        known = figures["gallery"]
        cells = [variant] + [
            str(known.get(key, "–"))
            for key in ("images", "gallery_photos", "classes", "classifier_classes", "unlearned_classes",
                        "gallery_photo_only_classes")
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n## What the gallery knows that the classifier does not\n\n" + "\n".join(lines) + "\n\nA classifier "
        "names the classes it `learned`; retrieval names every class of its gallery, those `only in the gallery` "
        "too: the filter's tail and the landmarks of the gallery photos (`data.gallery_photos`), which no model "
        "trains on. `only in gallery photos`: landmarks no train image shows, added without retraining. The test "
        "column `of classes not learned` counts the test landmarks named right that only the gallery knows.\n"
    )


def recognition_table(recognitions: dict, methods, submission: dict | None) -> str:
    """Markdown: one row per variant × recognition method (the recognize stages' metrics.json, methods in
    recognize.methods' order), the submission's in bold, then the submission and its test GAP."""
    if not recognitions:
        return ""
    any_test = any("test_gap" in row for figures in recognitions.values() for row in figures["methods"].values())
    header = "| variant | classes learned | method | validation GAP | dev GAP |"
    if any_test:
        header += (
            " test GAP | public | private | test GAP, landmarks only | test landmarks named"
            " | of classes below the filter | of classes not learned |"
        )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    chosen = (submission or {}).get("variant"), (submission or {}).get("method")
    for variant, figures in recognitions.items():
        for method in methods:
            row = figures["methods"][method]
            shown = [f"**{variant}**", f"**{method}**"] if (variant, method) == chosen else [variant, method]
            learned = str(figures["gallery"]["classifier_classes"])
            cells = [shown[0], learned, shown[1], _number(row["validation_gap"]), _number(row["dev_gap"])]
            if any_test:
                cells += [
                    _number(row.get(key))
                    for key in ("test_gap", "test_public", "test_private", "test_gap_landmarks_only")
                ]
                cells += [f"{row['correct']} of {row['test_landmarks']}", str(row["correct_below_threshold"])]
                cells.append(str(row.get("correct_unlearned", "–")))
            lines.append("| " + " | ".join(cells) + " |")
    gallery = next(iter(recognitions.values()))["gallery"]
    text = "\n# Recognition: methods × variants\n\n" + "\n".join(lines) + "\n\n"
    text += (
        f"The filter kept {gallery['filter_classes']} classes; a classifier names only the classes it learned "
        f"(`classes learned`), where retrieval searches all {gallery['images']} train images of {gallery['classes']} "
        "classes (every usable one, the dev images included) and can name any of them. Validation GAP: the dev set "
        "(images of every class with two or more, those below the filter included) with the held-out non-landmarks, "
        f"searched against the {gallery['validation_images']} train images that are not dev images; what the "
        "submission is chosen by. Every row answers the same validation queries: a classifier misses those of the "
        "classes it never learned. The test columns come from the solution file and are only reported. Nearest "
        "neighbours of fixed queries: `retrieval.png`.\n"
    )
    text += gallery_table(recognitions)
    if submission:
        text += (
            f"\n## Submission\n\n`{submission['variant']}` by `{submission['method']}` (validation GAP "
            f"{submission['validation_gap']:.3f}) predicted {submission['predicted']} of "
            f"{submission['test_images']} test images."
        )
        if "gap" in submission:
            splits = ", ".join(f"{key} {submission[key]:.4f}" for key in ("public", "private") if key in submission)
            text += (
                f" Test GAP against the solution file: {submission['gap']:.4f}"
                + (f" ({splits})" if splits else "")
                + "."
            )
        text += "\n"
    return text


def _smooth(values: pd.Series, weight: float) -> pd.Series:
    return values.ewm(alpha=1 - weight).mean()


def plot_curves(plots_dir, variants, out_png, smoothing: float) -> None:
    """Train loss and batch GAP (smoothed: `smoothing` is the weight of the past), dev loss and GAP, one line per
    variant."""
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
            values = _smooth(curve[column], smoothing) if kind == "train" else curve[column]
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


def _shown_images(images_dir, wanted) -> dict:
    """(split, id) -> PIL image, from the pack stage's shards (each split's index read once) or the Kaggle layout."""
    images = {}
    for split in sorted({split for split, _ in wanted}):
        ids = sorted({image_id for where, image_id in wanted if where == split})
        reader = image_reader(images_dir, split, ids)
        for position, image_id in enumerate(ids):
            images[(split, image_id)] = Image.open(io.BytesIO(reader.read(position))).convert("RGB")
    return images


def _query_split(query_set: str, landmark: int) -> str:
    if query_set == "test":
        return "test"
    return "train" if landmark >= 0 else "nonlandmark"  # a dev image, or a held-out non-landmark


def _photo_grid(rows: int, columns: int):
    """(figure, axes): rows × columns tiles for photos, 2 inches high each (180 px at the saved 90 dpi)."""
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, axes


def _tile(axis, image, title: str, color: str = "black") -> None:
    axis.imshow(image)
    axis.set_title(title, fontsize=7, color=color)


def _save_grid(figure, out_png) -> None:
    figure.tight_layout()
    with atomic_path(out_png) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    plt.close(figure)


def plot_retrieval(neighbours: pd.DataFrame, verdicts: dict, images_dir, out_png) -> None:
    """One row per query: the query (its truth, and the verdict: landmark and confidence, or no landmark), then
    its nearest gallery images with their landmark and similarity; green where the label is the query's."""
    queries = neighbours.drop_duplicates(["query_set", "query_id"])
    wanted = {(_query_split(row.query_set, row.query_landmark), row.query_id) for row in queries.itertuples()}
    wanted |= {("train", image_id) for image_id in neighbours["neighbour_id"]}
    images = _shown_images(images_dir, wanted)
    columns = 1 + int(neighbours["rank"].max()) if len(neighbours) else 1
    figure, axes = _photo_grid(max(1, len(queries)), columns)
    for row, query in enumerate(queries.itertuples()):
        truth = query.query_landmark
        label, confidence = verdicts.get((query.query_set, query.query_id), (-1, np.nan))
        verdict = "no landmark" if label < 0 else f"{label} ({confidence:.2f}) {'right' if label == truth else 'wrong'}"
        shows = f"landmark {truth}" if truth >= 0 else "no landmark"
        image = images[(_query_split(query.query_set, truth), query.query_id)]
        _tile(axes[row, 0], image, f"{query.query_set}: {shows}\n→ {verdict}")
        found = neighbours[(neighbours["query_set"] == query.query_set) & (neighbours["query_id"] == query.query_id)]
        for near in found.itertuples():
            color = "green" if near.neighbour_landmark == truth else "black"
            title = f"{near.neighbour_landmark}\nsim {near.similarity:.2f}"
            _tile(axes[row, near.rank], images[("train", near.neighbour_id)], title, color)
    _save_grid(figure, out_png)


def plot_answers(paths, queries, answers, images_dir, out_png, shown: int = 5) -> None:
    """One row per photo (`landmark predict --show`): the photo with its answer, then the nearest gallery photos
    that voted (queries: after the method's query steps), each with its landmark, similarity and, where the method
    verified the pair, its inliers; green where it is the answer's landmark."""
    columns = 1 + min(shown, queries.positions.shape[1])
    positions = queries.positions[:, : columns - 1]
    inliers = queries.photos.checked(positions) if queries.photos is not None else np.full(positions.shape, -1)
    reached = positions[positions >= 0]
    images = _shown_images(images_dir, {("train", image_id) for image_id in queries.gallery.ids[reached]})
    figure, axes = _photo_grid(len(paths), columns)
    for row, (path, answer) in enumerate(zip(paths, answers, strict=True)):
        verdict = f"{answer[0][0]} ({answer[0][1]:.2f})" if answer else "no landmark"
        _tile(axes[row, 0], Image.open(path).convert("RGB"), f"{Path(path).name[:24]}\n→ {verdict}")
        for column, position in enumerate(positions[row], start=1):
            if position < 0:
                continue
            landmark = queries.gallery.labels[position]
            verified = f", {inliers[row, column - 1]} inliers" if inliers[row, column - 1] >= 0 else ""
            title = f"{landmark}\nsim {queries.similarities[row, column - 1]:.2f}{verified}"
            color = "green" if answer and landmark == answer[0][0] else "black"
            _tile(axes[row, column], images[("train", queries.gallery.ids[position])], title, color)
    _save_grid(figure, out_png)


def _read_present(paths: dict) -> dict:
    """name -> the JSON at its path, for the paths that exist (a stage not run yet leaves its row out)."""
    return {name: json.loads(Path(path).read_text()) for name, path in paths.items() if Path(path).exists()}


def chosen_verdicts(recognitions_dir, submission: dict) -> dict:
    """(query_set, id) -> (landmark, confidence) of the submission's variant and method."""
    predictions = read_csv(Path(recognitions_dir) / submission["variant"] / "predictions.csv", ["method", "id"])
    mine = predictions[predictions["method"] == submission["method"]]
    labels, confidences = mine["landmark_id"].astype(np.int64), mine["confidence"].astype(float)
    return dict(
        zip(zip(mine["query_set"], mine["id"], strict=True), zip(labels, confidences, strict=True), strict=True)
    )


def write_report(metrics_dir, plots_dir, submission_json, recognitions_dir, images_dir, params, out_dir) -> dict:
    """results.md, curves.png and retrieval.png from the stages' outputs; params: the parsed params.yaml."""
    variants = list(params.variants)
    metrics = _read_present({name: Path(metrics_dir) / f"{name}.json" for name in variants})
    submission = _read_present({"chosen": submission_json}).get("chosen")
    recognitions = _read_present(
        {name: Path(recognitions_dir) / name / "metrics.json" for name in params.embed.recognitions}
    )
    tables = results_table(metrics, params.variants) + recognition_table(
        recognitions, params.recognize.methods, submission
    )
    write_text(Path(out_dir) / "results.md", tables)
    plot_curves(plots_dir, variants, Path(out_dir) / "curves.png", params.report.curve_smoothing)
    if submission:
        neighbours = read_csv(Path(recognitions_dir) / submission["variant"] / "neighbours.csv", ["query_id"])
        neighbours = neighbours.astype(
            {"query_landmark": np.int64, "rank": np.int64, "neighbour_landmark": np.int64, "similarity": float}
        )
        verdicts = chosen_verdicts(recognitions_dir, submission)
        plot_retrieval(neighbours, verdicts, images_dir, Path(out_dir) / "retrieval.png")
    return metrics
