import numpy as np
import pytest

from ic_anogan.reporting import metrics


def test_auroc_hand_made():
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # pairs (pos, neg): (0.35 vs 0.1 ok, vs 0.4 no), (0.8 ok, ok) -> 3/4
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between one positive and one negative counts half: (1 + 0.5) / 2
    assert metrics.auroc([0, 0, 1], [0.1, 0.5, 0.5]) == pytest.approx(0.75)


def test_average_precision_hand_made():
    # order: 0.9 (1), 0.8 (0), 0.7 (1): AP = 0.5 * 1 + 0.5 * 2/3
    assert metrics.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)
    assert metrics.average_precision([0, 1], [0.1, 0.9]) == 1.0


def test_tpr_at_fpr_and_threshold_metrics():
    labels = [0] * 100 + [1] * 10
    scores = list(range(100)) + [99.5, 98.5, 50, 50, 50, 50, 50, 50, 50, 200]
    # FPR <= 1% allows one good (99) above the threshold: 200, 99.5 and 98.5 are caught.
    assert metrics.tpr_at_fpr(labels, scores, 0.01) == pytest.approx(0.3)
    assert metrics.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.2)
    result = metrics.threshold_metrics(labels, scores, 98.7)
    assert (result["true_positives"], result["false_positives"]) == (2, 1)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(0.2)
    assert result["f1"] == pytest.approx(2 * (2 / 3) * 0.2 / (2 / 3 + 0.2))


def test_evaluate_counts_per_type_and_pixels():
    labels = np.array([0, 0, 1, 1])
    types = ["good", "good", "void", "short_fill"]
    maps = np.zeros((4, 2, 2, 1))
    masks = np.zeros((4, 2, 2, 1))
    masks[2, 0, 0] = masks[3, 1, 1] = 1
    maps[2, 0, 0] = maps[3, 1, 1] = 5.0
    result = metrics.evaluate(labels, [0.1, 0.2, 0.9, 0.3], types, 0.25, maps, masks,
                              np.array([False, False, True, True]))
    assert result["counts"] == {"good": 2, "short_fill": 1, "void": 1}
    assert result["auroc"] == 1.0 and result["pixel_auroc"] == 1.0
    assert result["auroc_per_defect_type"] == {"short_fill": 1.0, "void": 1.0}
    assert result["at_threshold"]["recall"] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="both good"):
        metrics.auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="finite"):
        metrics.auroc([0, 1], [0.1, np.nan])
