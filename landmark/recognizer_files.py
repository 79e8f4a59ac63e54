"""Where a recognition's files are, as `dvc repro` writes them: what landmark predict reads and the registered
model carries. Nothing here imports torch, so the register stage starts in a second."""

from dataclasses import dataclass
from pathlib import Path

from landmark.recognition.gallery import PARTS


@dataclass
class RecognizerFiles:
    """Where a recognition's files are under root, as `dvc repro` writes them: its gallery's embeddings and index
    folders, and per member variant (one, or an ensemble's) its model, its looks and its whitening (what an
    ensemble's part goes through before it is combined)."""

    recognition: str
    ensemble_variants: list | None
    root: Path

    @property
    def variants(self) -> list:
        return list(self.ensemble_variants) if self.ensemble_variants else [self.recognition]

    @property
    def embeddings(self) -> Path:
        if self.ensemble_variants:
            return self.root / "ensembles" / self.recognition / "embeddings"
        return self.root / "embeddings" / self.recognition

    @property
    def index(self) -> Path:
        if self.ensemble_variants:
            return self.root / "ensembles" / self.recognition / "index"
        return self.root / "indexes" / self.recognition

    @property
    def models(self) -> list:
        return [self.root / "models" / name / "model.pt" for name in self.variants]

    @property
    def looks(self) -> list:
        return [self.root / "embeddings" / name / "looks.json" for name in self.variants]

    @property
    def whitenings(self) -> list:
        return [self.root / "indexes" / name / "whitening.npz" for name in self.variants]

    @property
    def graphs(self) -> Path:
        """The recognize stage's neighbour graphs (landmark.recognition.graph): what DBA found of the gallery."""
        return self.root / "neighbour_graphs" / self.recognition

    def every_file(self) -> list:
        """Every file a Recognizer reads (a method that verifies aside), relative to root: the neighbour graphs
        where the recognize stage kept some (a method with dba), so that DBA need not search the gallery again."""
        gallery = [self.embeddings / f"{part}.{kind}" for part in PARTS for kind in ("csv", "npy")]
        indexes = [self.index / name for name in ("whitening.npz", "gallery.faiss", "dev.faiss", "pool.faiss")]
        members = self.models + self.looks + (self.whitenings if self.ensemble_variants else [])
        graphs = sorted(self.graphs.glob("*.npz"))
        return [path.relative_to(self.root) for path in gallery + indexes + members + graphs]
