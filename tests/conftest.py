import pytest

from landmark.data.synthetic import generate
from landmark.settings import Synthetic

TINY_SYNTHETIC = dict(
    seed=7,
    num_classes=6,
    max_images_per_class=12,
    min_images_per_class=2,
    tail_exponent=1.0,
    num_test_images=20,
    test_landmark_fraction=0.25,
    ignored_fraction=0.1,
    num_nonlandmark_images=12,
    image_size=32,
    jpeg_quality=85,
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small synthetic dataset in the Kaggle layout, made once per test session."""
    root = tmp_path_factory.mktemp("synthetic") / "raw"
    generate(root, Synthetic(**TINY_SYNTHETIC))
    return root


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return uri
