from landmark.report import ordering_note, results_table


def metrics(gap):
    return {"gap": gap, "batch_gap": gap, "loss": 1.0, "accuracy": gap}


def test_table_puts_the_papers_numbers_beside_ours_and_compares_the_order():
    ours = {"resnet50": metrics(0.3), "xception": metrics(0.2), "xception_cbp_gao": metrics(0.9)}
    text = results_table(
        ours, {"variant": "xception_cbp_gao", "predicted": 5, "test_images": 9, "gap": 0.5, "private": 0.4}
    )
    assert "| resnet50 | ResNet50 | 0.300 | 0.300 | 1.000 | 0.300 | 0.241 | 3.183 |" in text
    assert "| **xception_cbp_gao** | — (extra row) | 0.900 |" in text
    assert "ours: resnet50 > xception; the paper's: xception > resnet50" in text
    assert "ranked the other way round from the paper: xception vs resnet50" in text
    assert "Test GAP against the solution file: 0.5000 (private 0.4000)" in text


def test_same_order_is_said_too():
    assert "Every pair is ranked as in the paper" in ordering_note({"resnet50": metrics(0.1), "xception": metrics(0.2)})
    assert ordering_note({"resnet50": metrics(0.1)}) == ""
