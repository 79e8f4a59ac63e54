"""`landmark predict`: a user's own photos recognised as the submission recognises the test set, by a trained
variant or an ensemble of several (each variant's model and whitening, the ensemble's descriptors as the ensemble
stage combines them), with its faiss indexes: the top landmarks with their confidences, each landmark's name where
a names file is given (GLDv2's train_label_to_category.csv), and "no landmark" where the method's non-landmark
suppression leaves no landmark a positive confidence. The method runs as the recognize stage runs it
(landmark.recognition.method), on every train image, the dev images included. A method that verifies matches every
photo given (not the test set's most confident share) with the gallery's stored photos, whose features come from the
recognize stage's local_features/<variant> where it kept them (extracted here, and not kept, where not). A method with
dba takes the gallery's neighbours from the recognize stage's neighbour_graphs/<variant> (searched here where not)."""

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from landmark.data.images import check
from landmark.data.layout import read_csv
from landmark.data.loading import ImageDataset
from landmark.data.shards import FileReader
from landmark.errors import UserError
from landmark.inference import Looks, TrainedModel, embed
from landmark.recognition.gallery import Gallery, Queries
from landmark.recognition.graph import NeighbourGraphs
from landmark.recognition.method import Method
from landmark.recognition.search import Whitening, combined
from landmark.recognition.verification import FILES, FeatureCache, Photos
from landmark.recognizer_files import RecognizerFiles
from landmark.runtime import make_loader


def landmark_names(path) -> dict:
    """landmark_id -> name from a names file (landmark_id, category: a Wikimedia Commons category URL or a name)."""
    if path is None or not Path(path).exists():
        return {}
    names = read_csv(path, ["landmark_id", "category"])
    short = names["category"].str.rsplit("Category:", n=1).str[-1].str.replace("_", " ")
    return dict(zip(names["landmark_id"].astype(np.int64), short, strict=True))


def read_looks(embeddings_dir, device) -> Looks:
    """The looks the embed stage took of the gallery with (its looks.json: scales, flip, precision), on device."""
    path = Path(embeddings_dir) / "looks.json"
    try:
        looked = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; rerun the embed stage (dvc repro)") from None
    if "precision" not in looked:
        raise UserError(f"{path}: written before embed.precision was recorded; rerun the embed stage (dvc repro)")
    return Looks.of(looked, device)


@dataclass
class Member:
    """One variant of a recogniser: its model, the looks the embed stage took of the gallery with it, the whitening
    its part of an ensemble's descriptor goes through (none for a lone variant, whose gallery whitens), its weight."""

    trained: TrainedModel
    looks: Looks
    whitening: Whitening
    weight: float


class Recognizer:
    """A recognition (one variant, or an ensemble of several) with its gallery (indexes, whitening, pool), ready to
    recognise photos by one method."""

    def __init__(self, members: list, gallery: Gallery, method: Method, neighbours: int, features=None):
        self.members, self.gallery, self.method, self.neighbours = members, gallery, method, neighbours
        self.features = features  # the gallery photos' FeatureCache where the method verifies; None where not

    @classmethod
    def load(cls, recognition: str, method: str, settings, device, images_dir, model_path=None, root=Path(".")):
        """recognition: a variant of embed.variants or an ensemble of embed.ensembles, read where `dvc repro` wrote
        it (root's models/, embeddings/, indexes/, ensembles/: recognizer_files); model_path: another model file of
        a variant, whose gallery is the variant's of its folder's name. settings: params.yaml, parsed; images_dir:
        the folders of the gallery's stored photos (the pack stage's and the gallery_photos stage's), and
        local_features/<recognition> their features as the recognize stage kept them, both read only by a method
        that verifies; neighbour_graphs/<recognition>, what DBA found of the gallery, is read only too."""
        parsed = Method.parse(method, settings.recognize, "--method").for_photos()
        features = None
        if any("photos" in step.needs for _, step in parsed.steps):
            if missing := [folder for folder in images_dir if not Path(folder).is_dir()]:
                raise UserError(
                    f"--gallery-images {missing[0]}: no such folder; --method {method} matches your photos with the "
                    "gallery's stored photos: run `dvc repro` (or `dvc pull`) first, or choose a method without verify"
                )
            extraction = settings.local_features
            features = FeatureCache(
                root / "local_features" / recognition, images_dir, extraction.max_side, extraction.max_features,
                os.cpu_count() or 1,
            )  # fmt: skip
        ensemble = settings.embed.ensembles.get(recognition) if model_path is None else None
        if model_path is None and ensemble is None and recognition not in settings.variants:
            raise UserError(f"--model {recognition}: neither a variant nor an ensemble of params.yaml, nor a *.pt file")
        files = RecognizerFiles(recognition, ensemble.variants if ensemble else None, root)
        model_paths = [model_path] if model_path else files.models
        weights = ensemble.weights if ensemble else [1.0]
        models = [TrainedModel.load(path, device) for path in model_paths]
        recognize = settings.recognize
        gallery = Gallery.load(files.embeddings, files.index, recognize.nprobe, recognize.refine_factor)
        gallery.graphs = NeighbourGraphs(files.graphs)
        members = [
            Member(
                trained,
                read_looks(looks.parent, device),
                Whitening() if ensemble is None else Whitening.load(whitening),
                weight,
            )
            for trained, looks, whitening, weight in zip(models, files.looks, files.whitenings, weights, strict=True)
        ]
        return cls(members, gallery, parsed, recognize.neighbours, features)

    def embeddings(self, paths, batch_size: int):
        """(embeddings, classifier landmarks, classifier probabilities) of the image files, each variant's decoded
        as its training images were and looked at as its gallery was; an ensemble's combined as the ensemble stage
        combines them, with the first variant's classifier (as the stage keeps it)."""
        parts, classifier = [], None
        for member in self.members:
            trained = member.trained
            dataset = ImageDataset(FileReader(paths), image_size=trained.variant.image_size, decode=trained.decode)
            loader = make_loader(dataset, batch_size, 0, trained.device)
            engine = trained.engine_for(member.looks)
            found = list(
                zip(*embed(trained.model, loader, trained.device, None, looks=member.looks, engine=engine), strict=True)
            )
            vectors, classes, probabilities = (np.concatenate(part) for part in found)
            parts.append(member.whitening(vectors))
            if classifier is None:
                classifier = trained.labels.landmarks(classes), probabilities
        vectors = parts[0] if len(parts) == 1 else combined(parts, [member.weight for member in self.members])
        return vectors, *classifier

    def found(self, paths, batch_size: int = 32) -> Queries:
        """The photos as one query set, with their nearest gallery images: searched like the test set (every train
        image, the dev images included)."""
        vectors, classifier_labels, probabilities = self.embeddings(paths, batch_size)
        classifier, widest = (classifier_labels, probabilities), self.method.widest(self.neighbours)
        queries = Queries.find(self.gallery, vectors, classifier, self.neighbours, widest=widest)
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
        for labels, confidences in zip(ranking.labels, ranking.confidences, strict=True):
            refused = self.method.refuses_non_landmarks and confidences[0] <= 0
            answers.append(
                [] if refused else [(int(a), float(b)) for a, b in zip(labels, confidences, strict=True) if a >= 0]
            )
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


def landmark_entries(found, names) -> list:
    """One photo's answer as `--json` lists it: landmark_id, confidence (6 places) and, where known, name."""
    return [
        {"landmark_id": label, "confidence": round(score, 6)} | ({"name": names[label]} if label in names else {})
        for label, score in found
    ]


def answer_lines(paths, problems, answers, names, as_json: bool) -> list:
    """The lines to print: one per photo, in the order given."""
    found = dict(zip([path for path in paths if path not in problems], answers, strict=True))
    lines = []
    for path in paths:
        if path in problems:
            entry = {"file": path, "error": problems[path]}
            text = f"{path}: error: {problems[path]}"
        else:
            landmarks = landmark_entries(found[path], names)
            entry = {"file": path, "landmarks": landmarks, "no_landmark": not landmarks}
            shown = [
                f"{item['landmark_id']} ({item['confidence']:.3f})" + (f" {item['name']}" if "name" in item else "")
                for item in landmarks
            ]
            text = f"{path}: " + (", ".join(shown) if shown else "no landmark")
        lines.append(json.dumps(entry) if as_json else text)
    return lines
