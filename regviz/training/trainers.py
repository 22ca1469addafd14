"""Trainers: a model, its optimizer and their traced functions, kept and reused across runs.

Why a pool of trainers: tracing those functions costs more than an epoch of the default model. A
finished run leaves its model, optimizer and traced functions behind, and the next run of the same
architecture takes them over with every variable (weights, dropout seed state, optimizer slots,
learning rate) copied from a newly built model, so it starts exactly where a brand-new model would.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

import tensorflow as tf

from regviz import problems
from regviz.model import build_model, build_optimizer
from regviz.settings import Settings
from regviz.training import factors
from regviz.training.sparse import first_matmul
from regviz.training.steps import dense_epoch_function, epoch_functions, eval_function
from regviz.training.tf_private import seed_keras

POOL_SIZE = 4  # idle trainers kept for reuse; a 512-wide one holds about 70 MB
CALL_SECONDS = 0.1  # longest a call of training steps should take: a cancel waits for the call running
FIRST_STEPS, PROBE_STEPS = 1, 2  # a new trainer's first call (it traces: its length is unknown), then one
# that measures the step time

_build_lock = threading.Lock()  # keras's seeding is global: build one model at a time


class _Trainer:
    """A Keras model, its optimizer and the traced functions that train and evaluate it."""

    def __init__(self, settings: Settings, n_cols: int):
        self.n_cols, self.batch_size = n_cols, settings.batch_size
        self.kind = problems.of_dataset(settings.dataset)[0].kind
        self.model, self.optimizer = _fresh_model(settings, n_cols)
        self.factors = factors.Factors(self.model, settings)  # before the first trace
        self.fresh = True
        # traced at their first call, which fit makes under _regviz_graph_options like every other
        self.tabular = problems.is_tabular(settings.dataset)
        if self.tabular:  # dense rows: one traced call per epoch, keras's optimizer step
            self.fused_step, self.run_steps = None, None
            self.run_epoch = dense_epoch_function(self.model, self.optimizer, settings.batch_size, self.kind)
        else:
            functions = epoch_functions(self.model, self.optimizer, n_cols, settings.batch_size, self.kind)
            self.fused_step, self.run_steps = functions
        self._evaluate = eval_function(self.model, self.kind)
        self.pace = Pace()  # not reset: the step time is the architecture's, whichever run measured it

    def reset(self, settings: Settings) -> None:
        """Every variable as a newly built model and optimizer for these settings have it."""
        if self.fresh:  # built for this run
            self.fresh = False
            return
        self.factors.assign(settings)
        model, optimizer = _fresh_model(settings, self.n_cols)
        mine, new = self.model.variables + self.optimizer.variables, model.variables + optimizer.variables
        for variable, value in zip(mine, new, strict=True):
            variable.assign(value)
        if self.fused_step is not None:
            self.fused_step.reset()

    def evaluate(self, x, y):
        """Validation predictions and data loss, penalty and weight statistics of the current weights."""
        # the product outside the traced function: a CSR matrix passed in loses its shape information
        kernel = self.model.layers[0].kernel
        return self._evaluate(tf.matmul(x, kernel) if self.tabular else first_matmul(x, kernel), y)


class Pace:
    """A trainer's measured seconds per training step, and how many steps its next call should take."""

    def __init__(self):
        self.step_seconds: float | None = None
        self.calls = 0

    def fits(self, steps: int) -> bool:
        """Whether these steps are expected to take no longer than one call should (CALL_SECONDS)."""
        return self.step_seconds is not None and steps * self.step_seconds <= CALL_SECONDS

    def chunk(self, remaining: int) -> int:
        """Steps for the next call: one for the call that traces, two to measure, then CALL_SECONDS' worth."""
        if self.step_seconds is None:
            return min(remaining, FIRST_STEPS if self.calls == 0 else PROBE_STEPS)
        per_call = max(1, int(CALL_SECONDS / self.step_seconds))
        calls = -(-remaining // per_call)
        return -(-remaining // calls)  # the remaining steps in equal calls, not a full one and a stub

    def measured(self, steps: int, seconds: float) -> None:
        """Remember one call's time per step; the first call traces, and says nothing of the steps."""
        if self.calls > 0:
            self.step_seconds = seconds / steps
        self.calls += 1


def _architecture(settings: Settings, n_cols: int) -> tuple:
    """What the traced functions depend on; not the seed, epochs, data (only its problem type and
    classes), or the values of the learning
    rate, penalties and dropout rate (variables: see factors.py), only which of those are nonzero."""
    s = settings
    head = problems.of_dataset(s.dataset)  # the problem type and the classes: the loss and the head
    tabular = problems.is_tabular(s.dataset)
    return (n_cols, *head, tabular, tuple(s.widths()), *factors.structure(s), s.optimizer, s.batch_size)


class _Pool:
    """Idle trainers by architecture, the least recently used dropped first; safe for many threads."""

    def __init__(self, size: int):
        self.size = size
        self._idle: OrderedDict[tuple, list[_Trainer]] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self, settings: Settings, n_cols: int):
        """A trainer for these settings, reset to fresh weights, for the duration of one run."""
        key = _architecture(settings, n_cols)
        with self._lock:
            trainer = self._take(key)
        trainer = trainer or _Trainer(settings, n_cols)
        trainer.reset(settings)
        try:
            yield trainer
        finally:
            self._give_back(key, trainer)

    def clear(self) -> None:
        """Drop every idle trainer: the next run of any architecture builds and traces a new one."""
        with self._lock:
            self._idle.clear()

    def idle(self, settings: Settings, n_cols: int) -> list[_Trainer]:
        """The idle trainers a run of these settings could take over (a copy of the list)."""
        with self._lock:
            return list(self._idle.get(_architecture(settings, n_cols), []))

    def _take(self, key):
        # a key leaves the map with its last trainer: eviction below never meets an empty list
        idle = self._idle.get(key)
        if not idle:
            return None
        trainer = idle.pop()
        if not idle:
            del self._idle[key]
        return trainer

    def _give_back(self, key, trainer):
        with self._lock:
            self._idle.setdefault(key, []).append(trainer)
            self._idle.move_to_end(key)
            while sum(len(t) for t in self._idle.values()) > self.size:
                oldest = next(iter(self._idle))
                self._idle[oldest].pop(0)
                if not self._idle[oldest]:
                    del self._idle[oldest]


pool = _Pool(POOL_SIZE)


def _fresh_model(settings: Settings, num_features: int):
    with _build_lock:
        seed_keras(settings.seed)
        model = build_model(settings, num_features)
        optimizer = build_optimizer(settings)
        optimizer.build(model.trainable_variables)
    return model, optimizer
