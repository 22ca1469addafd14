"""Metrics computed from validation predictions with NumPy."""

from __future__ import annotations

import numpy as np


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Exact ROC AUC (Mann-Whitney U with tied ranks averaged); None when only one class is present."""
    y = np.asarray(y_true) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = np.asarray(score)[order]
    # average ranks over ties so equal scores count half
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall(y_true: np.ndarray, called: np.ndarray) -> tuple[float | None, float | None]:
    """Precision and recall of binary calls; None where its denominator is zero."""
    y, called = np.asarray(y_true) > 0.5, np.asarray(called, bool)
    hits = int((y & called).sum())
    precision = hits / int(called.sum()) if called.any() else None
    recall = hits / int(y.sum()) if y.any() else None
    return precision, recall


def top_k(y_true: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the k most probable (ties broken by class order)."""
    best = np.argsort(-np.asarray(probabilities), axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(best == np.asarray(y_true).astype(np.int64)[:, None], axis=1)))


def validation_metrics(kind: str, y: np.ndarray, out: np.ndarray) -> dict:
    """The problem type's validation metrics (EpochRecord fields) from the model's outputs."""
    if kind == "binary":
        p = out[:, 0]
        precision, recall = precision_recall(y, p > 0.5)
        accuracy = float(np.mean((p > 0.5) == (y > 0.5)))
        auc = roc_auc(y, p)
        return {"val_accuracy": accuracy, "val_auc": auc, "val_precision": precision, "val_recall": recall}
    if kind == "multiclass":
        accuracy = float(np.mean(np.argmax(out, axis=1) == y.astype(np.int64)))
        return {"val_accuracy": accuracy, "val_auc": None, "val_top3": top_k(y, out, 3)}
    return {"val_accuracy": None, "val_auc": None, "val_mae": float(np.mean(np.abs(out[:, 0] - y)))}
