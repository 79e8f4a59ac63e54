"""`landmark predict`: a user's own photos recognised as the submission recognises the test set, by a trained
variant, its whitening and its faiss indexes: the top landmarks with their confidences, each landmark's name where
a names file is given (GLDv2's train_label_to_category.csv), and "no landmark" where the method's non-landmark
suppression leaves no landmark a positive confidence. The method runs as the recognize stage runs it
(landmark.recognition.method), on every train image, the dev images included. A method that verifies matches every
photo given (not the test set's most confident share) with the gallery's stored photos, whose features come from the
recognize stage's local_features/<variant> where it kept them (extracted here, and not kept, where not)."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from landmark.data.images import check
from landmark.data.layout import read_csv
from landmark.data.loading import ImageDataset
from landmark.data.shards import FileReader
from landmark.errors import UserError
from landmark.inference import TrainedModel, embed
from landmark.recognition.gallery import Gallery, Queries
from landmark.recognition.method import Method
from landmark.recognition.verification import FILES, FeatureCache, Photos
from landmark.runtime import make_loader


def landmark_names(path) -> dict:
    """landmark_id -> name from a names file (landmark_id, category: a Wikimedia Commons category URL or a name)."""
    if path is None or not Path(path).exists():
        return {}
    names = read_csv(path, ["landmark_id", "category"])
    short = names["category"].str.rsplit("Category:", n=1).str[-1].str.replace("_", " ")
    return dict(zip(names["landmark_id"].astype(np.int64), short))


def read_looks(embeddings_dir) -> dict:
    """The scales and flip the embed stage looked at the gallery with (its looks.json)."""
    try:
        return json.loads((Path(embeddings_dir) / "looks.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{embeddings_dir}/looks.json: no such file; rerun the embed stage (dvc repro)") from None


class Recognizer:
    """One variant's model with its gallery (indexes, whitening, pool), ready to recognise photos by one method."""

    def __init__(self, trained, gallery: Gallery, method: Method, neighbours: int, looks: dict, features=None):
        self.trained, self.gallery, self.method, self.neighbours = trained, gallery, method, neighbours
        self.looks = looks  # the embed stage's scales and flip: a photo is looked at as the gallery was
        self.features = features  # the gallery photos' FeatureCache where the method verifies; None where not

    @classmethod
    def load(cls, model_path, index_dir, embeddings_dir, method: str, settings, device, images_dir, features_dir):
        """settings: params.yaml, parsed; images_dir: the gallery's stored photos (the pack stage's shards) and
        features_dir: their local features as the recognize stage kept them, both read only by a method that
        verifies."""
        parsed = Method.parse(method, settings.recognize, "--method").for_photos()
        features = None
        if any("photos" in step.needs for _, step in parsed.steps):
            if not Path(images_dir).is_dir():
                raise UserError(
                    f"--gallery-images {images_dir}: no such folder; --method {method} matches your photos with the "
                    "gallery's stored photos: run `dvc repro` (or `dvc pull`) first, or choose a method without verify"
                )
            extraction = settings.local_features
            features = FeatureCache(
                features_dir, images_dir, extraction.max_side, extraction.max_features, os.cpu_count() or 1
            )
        trained = TrainedModel.load(model_path, device)
        recognize = settings.recognize
        gallery = Gallery.load(embeddings_dir, index_dir, recognize.nprobe, recognize.refine_factor)
        return cls(trained, gallery, parsed, recognize.neighbours, read_looks(embeddings_dir), features)

    def embeddings(self, paths, batch_size: int):
        """(embeddings, classifier landmarks, classifier probabilities) of the image files, decoded as the model's
        training images were."""
        dataset = ImageDataset(
            FileReader(paths), image_size=self.trained.variant.image_size, decode=self.trained.decode
        )
        loader = make_loader(dataset, batch_size, 0, self.trained.device)
        scales, flip = self.looks["scales"], self.looks["flip"]
        parts = list(zip(*embed(self.trained.model, loader, self.trained.device, None, scales=scales, flip=flip)))
        vectors, classes, probabilities = (np.concatenate(part) for part in parts)
        return vectors, self.trained.labels.landmarks(classes), probabilities

    def found(self, paths, batch_size: int = 32) -> Queries:
        """The photos as one query set, with their nearest gallery images: searched like the test set (every train
        image, the dev images included)."""
        vectors, classifier_labels, probabilities = self.embeddings(paths, batch_size)
        queries = Queries.find(self.gallery, vectors, (classifier_labels, probabilities), self.neighbours)
        return self.with_photos(queries, paths)

    def with_photos(self, queries: Queries, paths) -> Queries:
        """The queries with where their photos (the files at paths) and the gallery's are, where the method
        verifies."""
        if self.features is None:
            return queries
        photos = Photos(self.features, [FILES] * len(paths), [str(path) for path in paths], self.gallery.ids)
        return replace(queries, photos=photos, name="photos")

    def answers(self, queries: Queries, top_k: int) -> tuple:
        """(per photo: up to top_k (landmark_id, confidence), best first, empty for no landmark; the queries as they
        voted, for a picture of who). The frequency ban counts over the photos with the test set's limit."""
        voters, ranking = self.method.voted(queries, top_k)
        answers = []
        for labels, confidences in zip(ranking.labels, ranking.confidences):
            refused = self.method.refuses_non_landmarks and confidences[0] <= 0
            answers.append([] if refused else [(int(a), float(b)) for a, b in zip(labels, confidences) if a >= 0])
        return answers, voters


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
