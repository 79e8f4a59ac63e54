"""More than one look at each image: multi-scale and flipped embeddings, on a small real model and real photos."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from landmark import inference
from landmark.data.labels import LabelEncoding
from landmark.data.loading import ImageDataset, model_input
from landmark.data.shards import FileReader
from landmark.errors import UserError
from landmark.inference import Looks, OnnxPreLogits, TrainedModel, embed
from landmark.models import create_model
from landmark.predict import read_looks
from landmark.runtime import autocast_dtype, make_loader
from landmark.settings import Embed, parse
from tests.test_models import variant
from tests.test_settings import PARAMS

EMBED = PARAMS["embed"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for number in range(3):
        path = folder / f"photo{number}.png"  # lossless: a mirrored copy is exactly mirrored
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    mirrored = folder / "mirrored.png"
    Image.open(paths[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    return paths, mirrored


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(variant(neck={"name": "embedding", "dim": 16}), num_classes=5).eval()


def embedded(model, paths, classify=True, engine=None, **looks):
    loader = make_loader(ImageDataset(FileReader(paths), image_size=32), 2, 0, torch.device("cpu"))
    found = embed(model, loader, torch.device("cpu"), None, looks=Looks(**looks), classify=classify, engine=engine)
    vectors, classes, confidences = (np.concatenate(part) for part in zip(*found, strict=True))
    return vectors, classes, confidences


def test_one_scale_without_flip_is_the_single_look_embedding(model, photos):
    paths, _ = photos
    vectors, classes, confidences = embedded(model, paths, scales=(1.0,), flip=False)
    dataset = ImageDataset(FileReader(paths), image_size=32)
    images = torch.stack([dataset[index][0] for index in range(len(paths))])
    with torch.no_grad():
        inputs = model_input(model, dataset, torch.device("cpu"))(images, list(range(len(paths))))
        pre_logits = model.forward_head(model.forward_features(inputs), pre_logits=True)
        expected_confidences, expected_classes = model.head.confidence(model.head(pre_logits))
    np.testing.assert_allclose(vectors, F.normalize(pre_logits, dim=1).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(classes, expected_classes.numpy())
    np.testing.assert_allclose(confidences, expected_confidences.numpy(), rtol=0, atol=1e-6)


def test_without_the_classifier_the_embeddings_are_the_same_and_no_class_is_named(model, photos):
    paths, _ = photos
    looks = {"scales": (0.7071, 1.0), "flip": True}
    vectors, _, _ = embedded(model, paths, **looks)
    searched, classes, confidences = embedded(model, paths, **looks, classify=False)
    np.testing.assert_array_equal(searched, vectors)
    assert (classes == -1).all() and (confidences == 0).all()


def test_a_flipped_multi_scale_embedding_is_the_normalised_mean_and_the_same_for_a_mirrored_photo(model, photos):
    paths, mirrored = photos
    looked_at = (0.7071, 1.0, 1.4142)
    looks, _, _ = zip(*(embedded(model, paths[:1], scales=(scale,), flip=False) for scale in looked_at), strict=True)
    several, _, _ = embedded(model, paths[:1], scales=looked_at, flip=False)
    mean = np.mean(looks, axis=0)
    np.testing.assert_allclose(several, mean / np.linalg.norm(mean, axis=1, keepdims=True), rtol=0, atol=1e-5)
    assert np.linalg.norm(several - looks[1]) > 1e-3  # the other scales did change it
    # at the model's size and scales of whole pixels, a mirrored photo's looks are exactly the mirrored ones
    flipped, _, _ = embedded(model, [paths[0], mirrored], scales=(0.5, 1.0, 2.0), flip=True)
    assert np.dot(flipped[0], flipped[1]) > 0.99999  # mirrored: the same looks


def test_scales_are_checked_in_one_line():
    with pytest.raises(UserError, match=r"params.yaml embed.scales: \[1, 1\] names a scale twice"):
        parse(Embed, EMBED | {"scales": [1, 1]}, "embed")
    with pytest.raises(UserError, match=r"params.yaml embed.scales: \[0\] must be a list of positive numbers"):
        parse(Embed, EMBED | {"scales": [0]}, "embed")


def test_bf16_embeddings_are_near_fp32_ones_and_name_the_same_classes(model, photos):
    paths, _ = photos
    looks = {"scales": (0.7071, 1.0), "flip": True}
    exact, exact_classes, _ = embedded(model, paths, **looks)
    fast, fast_classes, _ = embedded(model, paths, **looks, dtype=torch.bfloat16)
    cosines = (exact * fast).sum(axis=1)
    assert (cosines > 0.999).all() and (cosines < 1 - 1e-7).any()  # bf16 took effect, and stayed close
    np.testing.assert_array_equal(fast_classes, exact_classes)


def test_the_precision_setting_resolves_per_device_and_bf16_without_the_instructions_is_said(monkeypatch, capsys):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    looked = {"scales": [1.0], "flip": False}
    assert Looks.of(looked | {"precision": "auto"}, gpu).dtype is torch.bfloat16
    assert Looks.of(looked | {"precision": "fp32"}, gpu).dtype is None
    for probe, supported in (("_is_avx512_bf16_supported", True), ("_is_amx_tile_supported", False)):
        monkeypatch.setattr(torch.cpu, probe, lambda supported=supported: supported, raising=False)
    assert Looks.of(looked | {"precision": "auto"}, cpu).dtype is torch.bfloat16  # native: bf16
    assert autocast_dtype("auto", cpu) is None  # training's auto stays fp32 on the CPU
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert Looks.of(looked | {"precision": "auto"}, cpu).dtype is None  # emulated: fp32, said nothing
    assert capsys.readouterr().err == ""
    assert autocast_dtype("bf16", cpu, "embed.precision") is torch.bfloat16
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        "params.yaml embed.precision: bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX), which emulates it "
        "slower than fp32; set it to fp32 or auto on this machine"
    ]


def test_predict_reads_the_looks_the_gallery_was_embedded_with(tmp_path):
    (tmp_path / "looks.json").write_text('{"scales": [0.7071, 1], "flip": true, "precision": "bf16"}')
    assert read_looks(tmp_path, torch.device("cpu")) == Looks((0.7071, 1.0), True, torch.bfloat16)
    (tmp_path / "looks.json").write_text('{"scales": [1], "flip": true}')
    with pytest.raises(UserError, match="looks.json: written before embed.precision was recorded; rerun the embed"):
        read_looks(tmp_path, torch.device("cpu"))


def test_onnxruntime_computes_the_embeddings_and_classes_torch_computes(model, photos):
    paths, _ = photos
    looks = {"scales": (0.7071, 1.0), "flip": True}  # the export takes any side: each scale's
    exact, exact_classes, exact_confidences = embedded(model, paths, **looks)
    onnx, classes, confidences = embedded(model, paths, engine=OnnxPreLogits(model, 32), **looks)
    np.testing.assert_allclose(onnx, exact, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(classes, exact_classes)
    np.testing.assert_allclose(confidences, exact_confidences, rtol=0, atol=1e-5)


def test_onnxruntime_runs_a_batch_a_few_images_at_a_time_with_the_numbers_of_one_at_a_time(
    model, tmp_path, monkeypatch
):
    """What embed passes ONNX Runtime is split into runs of rows_per_run images; each image's pre-logits are the
    ones it gets alone. The export is kept where asked (the embedding cache's folder) and read back from there."""
    engine = OnnxPreLogits(model, 32, kept=tmp_path)
    images = torch.rand(OnnxPreLogits.rows_per_run + 5, 3, 32, 32)
    alone = torch.cat([engine(image[None]) for image in images])
    assert torch.equal(engine(images), alone)
    assert (tmp_path / "model.onnx").is_file()
    monkeypatch.setattr(inference, "export_pre_logits", lambda *args: pytest.fail("exported again"))
    assert torch.equal(OnnxPreLogits(model, 32, kept=tmp_path)(images), alone)


def test_the_engine_setting_resolves_per_device_and_onnxruntime_computes_fp32(capsys):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    looked = {"scales": [1.0], "flip": False, "engine": "auto"}
    assert Looks.of(looked | {"precision": "auto"}, cpu) == Looks((1.0,), False, None, "onnxruntime")
    assert Looks.of(looked | {"precision": "bf16"}, cpu).engine == "torch"  # bf16 asked for: torch computes it
    assert Looks.of(looked | {"precision": "auto"}, gpu) == Looks((1.0,), False, torch.bfloat16, "torch")
    assert Looks.of(looked | {"precision": "fp32", "engine": "torch"}, cpu) == Looks((1.0,), False, None, "torch")
    assert capsys.readouterr().err == ""
    # onnxruntime named on a GPU: one line, and torch runs it as the precision says
    assert Looks.of(looked | {"precision": "auto", "engine": "onnxruntime"}, gpu) == Looks(
        (1.0,), False, torch.bfloat16, "torch"
    )
    assert capsys.readouterr().err == "embed.engine: onnxruntime runs on the CPU here; torch runs the model on cuda\n"
    with pytest.raises(UserError, match=r"^params.yaml embed.engine: onnxruntime runs the model in fp32; set "
                       r"embed.precision to fp32 or auto, or embed.engine to torch for bf16$"):  # fmt: skip
        parse(Embed, EMBED | {"engine": "onnxruntime", "precision": "bf16"}, "embed")


def test_a_model_onnxruntime_cannot_take_is_said_in_one_line_and_torch_runs_it(model, monkeypatch, capsys):
    trained = TrainedModel(model, variant(), "worker", LabelEncoding([1, 2, 3, 4, 5], [2] * 5), "", torch.device("cpu"))

    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fft_rfftn' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    assert trained.engine_for(Looks(engine="onnxruntime")) is None
    assert trained.engine_for(Looks(engine="onnxruntime")) is None  # tried once per model
    assert capsys.readouterr().err.splitlines() == [
        "embed: onnxruntime cannot run this resnet18 (Exporting the operator 'aten::fft_rfftn' to ONNX opset version "
        "17 is not supported); torch runs it"
    ]
    assert trained.engine_for(Looks(engine="torch")) is None
