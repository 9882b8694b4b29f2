"""Evaluation metrics in plain numpy, shared by `eval`, the export gate and tests.

Definitions follow the seed papers: mean_acc = (specificity + sensitivity) / 2
with specificity the accuracy on the negative (poor-quality) class; quadratic
weighted kappa as in the Kaggle DR challenge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows are the truth, columns the prediction."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def precision_recall(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall from a confusion matrix (nan where undefined)."""
    tp = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / matrix.sum(axis=0)
        recall = tp / matrix.sum(axis=1)
    return precision, recall


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks)."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_report(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Paper metrics for a binary task where 1 = positive (e.g. gradable / good).

    specificity = accuracy on class 0, sensitivity = accuracy on class 1,
    mean_acc = their mean, precision = of class 1.
    """
    matrix = confusion_matrix(y_true, y_pred, 2)
    precision, recall = precision_recall(matrix)
    specificity, sensitivity = float(recall[0]), float(recall[1])
    return {
        "mean_acc": (specificity + sensitivity) / 2,
        "specificity": specificity,
        "sensitivity": sensitivity,
        "precision": float(precision[1]),
        "accuracy": accuracy(y_true, y_pred),
    }


def quadratic_weighted_kappa(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Cohen's kappa with quadratic weights (Kaggle DR's metric)."""
    observed = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    total = observed.sum()
    if total == 0:
        return float("nan")
    idx = np.arange(n_classes)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max((n_classes - 1) ** 2, 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    denominator = (weights * expected).sum()
    if denominator == 0:
        return 1.0 if (weights * observed).sum() == 0 else 0.0
    return float(1 - (weights * observed).sum() / denominator)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """The one PSNR of the project (dB); identical images give inf."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(test, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))
