"""Metrics against hand-computed values and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn_free_reference import auc_by_pairs, kappa_by_definition

from edgeret import metrics


def test_confusion_and_precision_recall():
    matrix = metrics.confusion_matrix([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    precision, recall = metrics.precision_recall(matrix)
    assert precision.tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert recall.tolist() == pytest.approx([0.5, 1.0, 0.5])


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * y, 1)  # rounding makes many ties
    assert metrics.roc_auc(y, scores) == pytest.approx(auc_by_pairs(y, scores))
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert np.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_kappa_matches_definition_and_extremes():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 400)
    noisy = np.clip(truth + rng.integers(-1, 2, 400), 0, 4)
    assert metrics.quadratic_weighted_kappa(truth, noisy, 5) == pytest.approx(
        kappa_by_definition(truth, noisy, 5))
    assert metrics.quadratic_weighted_kappa(truth, truth, 5) == 1.0
    assert metrics.quadratic_weighted_kappa(truth, 4 - truth, 5) < 0


def test_binary_report_follows_the_paper():
    # 4 poor (class 0), 6 good; 3 poor caught, 5 good passed
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    report = metrics.binary_report(y_true, y_pred)
    assert report["specificity"] == pytest.approx(0.75)
    assert report["sensitivity"] == pytest.approx(5 / 6)
    assert report["mean_acc"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert report["precision"] == pytest.approx(5 / 6)
    assert report["accuracy"] == pytest.approx(0.8)


def test_psnr():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)
    assert metrics.psnr(a, b) == pytest.approx(20.0)
