"""What a run will cost in seconds before it trains, and the limit above which a server refuses it.

The estimate is a linear model of one epoch, fitted to runs of regviz's training on IMDB on a 2-core
machine (per epoch: a fixed part, a part per optimizer step, the optimizer's pass over every weight
at every step, the first layer's sparse products, the dense layers' products), plus a first-epoch
trace; a fold trains on its share of the whole training split. Every finished run corrects it: the
ratio of its own training seconds (its epochs' compute, measured where they run) to the estimate is
averaged, a bounded step per run, so on a slower or faster host the estimates follow what that host
does while a busy moment does not move them. The limit judges what a page asks for in total.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

import numpy as np

from regviz.data import DatasetInfo
from regviz.runs.seam import from_env
from regviz.settings import Settings
from regviz.splits import HOLDOUT

ENV_MAX_RUN_SECONDS = "REGVIZ_MAX_RUN_SECONDS"
# a small shared host: the book's 512-512 run (about 8 s here) fits many times over; a 4 x 512-unit,
# 100-epoch run on batches of 32 (about 4 minutes) does not
DEFAULT_MAX_RUN_SECONDS = 120.0
TRACE_SECONDS = 0.5  # tracing a new architecture's functions, paid in its first epoch
# seconds per epoch: fixed, per step, per step and million weights, per million (row x first-layer
# unit), per billion (row x weight of the later layers); least squares (relative) on 9 measured
# epochs of 4 to 512 units, 1 to 4 layers, batches of 32 to 512: within 15 %, the 16-16 epoch at half
EPOCH, STEP, STEP_WEIGHTS, SPARSE, DENSE = 0.0129, 2.78e-4, 7.82e-4, 0.0194, 0.0469
LEARN_RATE = 0.3  # weight of the newest run in the running ratio of measured to estimated seconds
MAX_STEP = 1.1  # one run moves that ratio by at most this factor: a limit's verdict drifts, never jumps


def max_run_seconds_from_env(environ: Mapping[str, str] | None = None) -> float:
    """REGVIZ_MAX_RUN_SECONDS (a positive number of seconds) if set, else the default."""
    positive = "a number of seconds > 0"  # nan and inf fail the comparison
    return from_env(
        ENV_MAX_RUN_SECONDS, DEFAULT_MAX_RUN_SECONDS, float, lambda v: 0 < v < math.inf, positive, environ
    )


def split_rows(settings: Settings, info: DatasetInfo) -> tuple[int, int]:
    """(rows trained on, rows validated on) of this run: hold-out's fixed split, or a fold's share of the
    whole training split (hold-out and validation rows joined, as `Dataset.fold` cuts it)."""
    if settings.validation == HOLDOUT:
        return info.training_rows(settings.train_fraction), info.n_val
    whole = info.n_train + info.n_val
    bounds = np.linspace(0, whole, settings.folds + 1).round().astype(int)  # as splits.fold_rows
    fold = max(0, settings.fold)  # the whole protocol (-1) costs as much as its first fold
    val = int(bounds[fold + 1] - bounds[fold])
    return max(1, math.ceil(settings.train_fraction * (whole - val))), val


def epoch_seconds(settings: Settings, info: DatasetInfo) -> float:
    """Estimated seconds of one epoch (training steps and the validation pass) on an idle 2-core host."""
    s = settings
    rows, val = split_rows(s, info)
    steps = math.ceil(rows / s.batch_size)
    later = (s.depth - 1) * s.width * s.width + s.width  # weights after the first layer
    weights = info.num_features * s.width + later
    seen = rows + val / 3  # the validation pass is forward only: about a third of a step's work
    nnz = info.nnz_per_row / 130.0  # the model was fitted on IMDB's ~130 words per review
    return (
        EPOCH + STEP * steps + STEP_WEIGHTS * steps * weights / 1e6
        + SPARSE * seen * s.width * nnz / 1e6 + DENSE * seen * later / 1e9
    )  # fmt: skip


class CostModel:
    """Estimates of whole runs, corrected by the runs this server finished, and the refusal limit."""

    def __init__(self, info: Callable[[str], DatasetInfo | None], max_seconds: float | None = None):
        self._info = info  # dataset name -> its description, None while unknown
        self.max_seconds = max_run_seconds_from_env() if max_seconds is None else max_seconds
        self._ratio = 1.0
        self._lock = threading.Lock()

    def estimate(self, settings: Settings) -> float | None:
        """Seconds the whole run should take here; None while its dataset is not described yet."""
        info = self._info(settings.dataset)
        if info is None:
            return None
        with self._lock:
            ratio = self._ratio
        return ratio * (TRACE_SECONDS + settings.epochs * epoch_seconds(settings, info))

    def refusal(self, settings: Settings, seconds: float) -> str | None:
        """Why a run of this estimated cost is not trained here, and what to lower; None when it may run."""
        return self.request_refusal([("this run", 1, seconds)], kfold=settings.validation != HOLDOUT)

    def request_refusal(self, parts: list[tuple[str, int, float]], kfold=False, pinned=False) -> str | None:
        """Why a page's request is not trained as a whole, and what to lower; None when it may go. parts:
        (what, trainings, estimated seconds) of each part of it that is not stored (this run, its
        baseline, the pinned runs), every fold and repeat counted."""
        seconds = sum(p[2] for p in parts)
        if seconds <= self.max_seconds:
            return None
        trainings = sum(p[1] for p in parts)
        what = _and([p[0] for p in parts])
        count = f" ({trainings} trainings, a model per fold and repeat)" if trainings > len(parts) else ""
        lower = "the epochs, units per layer, hidden layers or training data"
        lower = f"the folds, repeats, {lower[4:]}" if kfold else lower
        unpin = ", or unpin runs" if pinned else ""
        return (
            f"{what[:1].upper()}{what[1:]} would take about {_duration(seconds)} to train here{count}, more "
            f"than the {_duration(self.max_seconds)} this server allows for one page's runs "
            f"({ENV_MAX_RUN_SECONDS}). Lower {lower}, or raise the batch size{unpin}."
        )

    def learn(self, settings: Settings, seconds: float) -> None:
        """Fold a finished run's own training seconds (its epochs' compute, not time spent waiting or
        interleaved with other runs) into the ratio that corrects every estimate; one run moves the
        ratio by at most MAX_STEP either way, so no single run swings the limit's verdicts."""
        info = self._info(settings.dataset)
        if info is None or seconds <= 0:
            return
        predicted = TRACE_SECONDS + settings.epochs * epoch_seconds(settings, info)
        with self._lock:
            seen = min(5.0, max(0.2, seconds / predicted))
            moved = (1 - LEARN_RATE) * self._ratio + LEARN_RATE * seen
            self._ratio = min(self._ratio * MAX_STEP, max(self._ratio / MAX_STEP, moved))


def _and(words: list[str]) -> str:
    return words[0] if len(words) < 2 else f"{', '.join(words[:-1])} and {words[-1]}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{math.ceil(seconds)} s"
    return f"{math.ceil(seconds / 60)} minutes"
