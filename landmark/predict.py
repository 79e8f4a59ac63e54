"""`landmark predict`: a user's own photos recognised as the submission recognises the test set, by a trained
variant, its whitening and its faiss indexes: the top landmarks with their confidences, each landmark's name where
a names file is given (GLDv2's train_label_to_category.csv), and "no landmark" where the method's non-landmark
suppression leaves no landmark a positive confidence. The frequency ban needs a whole test set, so a single
photo goes without it."""

import json
from pathlib import Path

import numpy as np

from landmark.data.images import check
from landmark.data.layout import read_csv
from landmark.data.loading import ImageDataset
from landmark.errors import UserError
from landmark.inference import TrainedModel, embed
from landmark.retrieval import (
    Neighbours,
    Whitening,
    mean_similarity,
    ranked_votes,
    read_embeddings,
    read_index,
    votes,
)
from landmark.runtime import make_loader
from landmark.settings import Recognize, parse_method


class FileReader:
    """The bytes of image files by position (any name, any format PIL opens)."""

    def __init__(self, paths):
        self.paths = [str(path) for path in paths]

    def __len__(self):
        return len(self.paths)

    def read(self, position: int) -> bytes:
        return Path(self.paths[position]).read_bytes()


def landmark_names(path) -> dict:
    """landmark_id -> name from a names file (landmark_id, category: a Wikimedia Commons category URL or a name)."""
    if path is None or not Path(path).exists():
        return {}
    names = read_csv(path, ["landmark_id", "category"])
    short = names["category"].str.rsplit("Category:", n=1).str[-1].str.replace("_", " ")
    return dict(zip(names["landmark_id"].astype(np.int64), short))


class Recognizer:
    """One variant's model, whitening, gallery and pool indexes, ready to recognise photos by one method."""

    def __init__(self, trained, whitening, gallery, gallery_vectors, gallery_index, pool_index, method, settings):
        self.trained, self.whitening, self.method, self.settings = trained, whitening, method, settings
        self.gallery_labels, self.gallery_vectors = gallery["landmark_id"].to_numpy(), gallery_vectors
        self.gallery_index, self.pool_index = gallery_index, pool_index
        self.base, self.suppressions = parse_method(method, "--method")

    @classmethod
    def load(cls, model_path, index_dir, embeddings_dir, method: str, settings: Recognize, device) -> "Recognizer":
        trained = TrainedModel.load(model_path, device)
        whitening = Whitening.load(Path(index_dir) / "whitening.npz")
        gallery, gallery_vectors = read_embeddings(embeddings_dir, "gallery")
        indexes = [
            read_index(Path(index_dir) / f"{name}.faiss", settings.nprobe, settings.refine_factor)
            for name in ("gallery", "pool")
        ]
        return cls(trained, whitening, gallery, gallery_vectors, *indexes, method, settings)

    def embeddings(self, paths, batch_size: int):
        """(whitened embeddings, classifier landmarks, classifier probabilities) of the image files, decoded as the
        model's training images were."""
        dataset = ImageDataset(
            FileReader(paths), image_size=self.trained.variant.image_size, decode=self.trained.decode
        )
        loader = make_loader(dataset, batch_size, 0, self.trained.device)
        parts = list(zip(*embed(self.trained.model, loader, self.trained.device, desc=None)))
        vectors, classes, probabilities = (np.concatenate(part) for part in parts)
        return self.whitening(vectors), self.trained.labels.landmarks(classes), probabilities

    def recognise(self, paths, top_k: int, batch_size: int = 32) -> list:
        """Per photo: up to top_k (landmark_id, confidence), best first; empty for no landmark."""
        vectors, classifier_labels, probabilities = self.embeddings(paths, batch_size)
        if self.base == "softmax":
            return [[(int(label), float(probability))] for label, probability in zip(classifier_labels, probabilities)]
        found = Neighbours.find(
            vectors,
            self.gallery_index,
            self.gallery_labels,
            self.pool_index,
            self.settings.neighbours,
            self.settings.pool_neighbours,
            (classifier_labels, probabilities),
        )
        correction = np.zeros(len(self.gallery_labels))
        if "train_correction" in self.suppressions:  # only the gallery images these photos reached
            reached = np.unique(found.positions[found.positions >= 0])
            near = self.whitening(self.gallery_vectors[reached])
            correction[reached] = mean_similarity(self.pool_index, near, self.settings.pool_neighbours)
        ranked = ranked_votes(*votes(self.method, found, correction, self.settings.blend_weight), top_k)
        suppressed = bool(self.suppressions - {"frequency_ban"})
        return [[] if suppressed and (not best or best[0][1] <= 0) else best for best in ranked]


def usable(paths, max_pixels: int):
    """(the paths that open as images, {path: why not} for the others)."""
    problems = {}
    for path in paths:
        reason = check(path, max_pixels) if Path(path).is_file() else "no such file"
        if reason:
            problems[path] = reason
    return [path for path in paths if path not in problems], problems


def chosen_recognition(submission_json) -> tuple:
    """(variant, method) of the submission (reports/submission.json)."""
    try:
        chosen = json.loads(Path(submission_json).read_text())
    except FileNotFoundError:
        raise UserError(
            f"{submission_json}: no such file; run `dvc repro` first, or pass --model and --method"
        ) from None
    return chosen["variant"], chosen["method"]


def answer_lines(paths, problems, answers, names, as_json: bool) -> list:
    """The lines to print: one per photo, in the order given."""
    found = dict(zip([path for path in paths if path not in problems], answers))
    lines = []
    for path in paths:
        if path in problems:
            entry = {"file": path, "error": problems[path]}
            text = f"{path}: error: {problems[path]}"
        else:
            landmarks = [
                {"landmark_id": label, "confidence": round(score, 6)}
                | ({"name": names[label]} if label in names else {})
                for label, score in found[path]
            ]
            entry = {"file": path, "landmarks": landmarks, "no_landmark": not landmarks}
            shown = [
                f"{item['landmark_id']} ({item['confidence']:.3f})" + (f" {item['name']}" if "name" in item else "")
                for item in landmarks
            ]
            text = f"{path}: " + (", ".join(shown) if shown else "no landmark")
        lines.append(json.dumps(entry) if as_json else text)
    return lines
