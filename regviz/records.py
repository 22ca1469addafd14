"""What one epoch of a run reports, and summaries read off a list of those reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

# fixed bins for the first hidden layer's weight histogram, so runs compare bin by bin
HIST_EDGES = tuple(round(-0.3 + 0.01 * i, 4) for i in range(61))
SMALL_WEIGHT = 1e-3  # |w| below this counts as (practically) zero


@dataclass(frozen=True)
class LayerStats:
    """Weight statistics of one hidden layer's kernel at the end of an epoch."""

    l2_norm: float  # sqrt(sum w^2)
    small_fraction: float  # share of weights with |w| < SMALL_WEIGHT


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's results; losses split into data loss (cross-entropy) and penalty."""

    epoch: int  # 1-based
    data_loss: float  # training cross-entropy, averaged over the epoch's batches (dropout on)
    val_data_loss: float  # validation cross-entropy, no penalty
    penalty: float  # sum of model.losses at the end of the epoch
    loss: float  # training loss as Keras reports it (data loss + penalty, batch-averaged)
    val_loss: float  # validation loss as Keras reports it (val data loss + penalty)
    accuracy: float
    val_accuracy: float
    val_auc: float | None  # ROC AUC on validation, binary problems only
    seconds: float  # since the run started
    layers: tuple[LayerStats, ...]
    hist: tuple[int, ...]  # first hidden layer's weights counted in HIST_EDGES bins (clipped)
    # the problem type's other metrics (problems.py); None where a type has no such metric
    val_precision: float | None = None  # binary: of the reviews called positive, the share that are
    val_recall: float | None = None  # binary: of the positive reviews, the share called positive
    val_top3: float | None = None  # multiclass: the true class among the three most probable
    mae: float | None = None  # regression: mean absolute error, training side (batch-averaged)
    val_mae: float | None = None
    # multi-hot (word) inputs, the run's last epoch only (words.py): the inputs whose first-kernel rows have
    # the largest L2 norms, as (column, norm), largest first; and how many inputs have every weight
    # below SMALL_WEIGHT (the ones L1 has practically zeroed)
    top_inputs: tuple[tuple[int, float], ...] | None = None
    zeroed_inputs: int | None = None

    def in_target_units(self, scale: float) -> EpochRecord:
        """A regression record of a target trained divided by `scale`: its absolute errors back in the
        target's units (the losses stay those of the scaled target, the ones the optimizer saw)."""
        if scale == 1.0:
            return self
        back = {k: getattr(self, k) * scale for k in ("mae", "val_mae") if getattr(self, k) is not None}
        return dataclasses.replace(self, **back)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        """Inverse of to_dict."""
        d = dict(d)
        d["layers"] = tuple(LayerStats(**s) for s in d["layers"])
        d["hist"] = tuple(d["hist"])
        if d.get("top_inputs") is not None:  # JSON gives lists; records stored before it have no key
            d["top_inputs"] = tuple((int(i), float(n)) for i, n in d["top_inputs"])
        return cls(**d)


def best_epoch(records: list[EpochRecord]) -> int | None:
    """Epoch with the lowest validation data loss: where early stopping would stop."""
    if not records:
        return None
    return min(records, key=lambda r: r.val_data_loss).epoch


def summary(records: list[EpochRecord], cached: bool) -> dict[str, Any]:
    """Best epoch, its validation data loss, final values and whether the run came from the store."""
    best = best_epoch(records)
    last = records[-1] if records else None
    return {
        "best_epoch": best,
        "min_val_data_loss": records[best - 1].val_data_loss if best else None,
        "final_val_data_loss": last.val_data_loss if last else None,
        "final_val_accuracy": last.val_accuracy if last else None,
        "epochs": len(records),
        "cached": cached,
    }



def mean_records(runs: list[list[EpochRecord]]) -> list[EpochRecord]:
    """The folds' mean record per epoch, over the epochs every fold has reached: each number averaged
    (None where a fold has none), seconds the slowest fold's, the weight histogram summed, the first
    fold's top inputs (words do not average)."""
    if not runs or not all(runs):
        return []
    epochs = min(len(r) for r in runs)
    return [_mean_epoch([r[i] for r in runs]) for i in range(epochs)]


def spread(runs: list[list[EpochRecord]], key: str) -> list[float]:
    """The folds' standard deviation of one field per epoch (population: the folds are all there is)."""
    epochs = min((len(r) for r in runs), default=0)
    return [float(np.std([getattr(r[i], key) for r in runs])) for i in range(epochs)]


def _mean_epoch(records: list[EpochRecord]) -> EpochRecord:
    values = {}
    for f in dataclasses.fields(EpochRecord):
        got = [getattr(r, f.name) for r in records]
        if f.name in ("epoch",):
            values[f.name] = got[0]
        elif f.name == "seconds":
            values[f.name] = max(got)
        elif f.name == "layers":
            values[f.name] = tuple(_mean_layer(layer) for layer in zip(*got, strict=True))
        elif f.name == "hist":
            values[f.name] = tuple(int(v) for v in np.sum(got, axis=0))
        elif f.name in ("top_inputs", "zeroed_inputs"):  # each fold's network keeps its own words
            values[f.name] = got[0]
        else:
            values[f.name] = None if any(g is None for g in got) else float(np.mean(got))
    return EpochRecord(**values)


def _mean_layer(stats) -> LayerStats:
    norm, small = np.mean([(s.l2_norm, s.small_fraction) for s in stats], axis=0)
    return LayerStats(float(norm), float(small))
