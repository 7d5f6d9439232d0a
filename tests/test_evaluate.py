"""Numpy detection metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspect.evaluation.metrics import auroc, average_precision, f1_at, f1_max, iou_at, roc_curve


def test_auroc_hand_values() -> None:
    # pairs (defect, good) ranked right: 3 of 4 -> 0.75
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.2, 0.9]) == 1.0 and auroc([1, 0], [0.2, 0.9]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf
    with pytest.raises(ValueError):
        auroc([1, 1], [0.1, 0.2])


def test_average_precision_hand_values() -> None:
    # ranked: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): AP = 0.5*1 + 0.5*(2/3)
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0, 1, 1], [0.1, 0.5, 0.9]) == pytest.approx(1.0)


def test_f1_hand_values() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # thresholds 0.8: P1 R.5 F1 2/3; 0.4: P.5 R.5 F1 .5; 0.35: P2/3 R1 F1 .8; 0.1: P.5 R1 F1 2/3
    best, thr = f1_max(y, s)
    assert best == pytest.approx(0.8) and thr == pytest.approx(0.35)
    assert f1_at(y, s, 0.5) == pytest.approx(2 / 3)
    assert f1_at(y, s, 0.9) == 0.0


def test_iou_hand_values() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 px
    amap = np.zeros((4, 4))
    amap[1:3, 1:3] = 1.0  # 4 px, 1 shared
    assert iou_at(mask, amap, 0.5) == pytest.approx(1 / 7)
    assert iou_at(np.zeros((2, 2)), np.zeros((2, 2)), 0.5) == 1.0
