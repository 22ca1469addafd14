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

from regviz.model import build_model, build_optimizer
from regviz.settings import Settings
from regviz.training.steps import epoch_functions, eval_function
from regviz.training.tf_private import seed_keras

POOL_SIZE = 4  # idle trainers kept for reuse; a 512-wide one holds about 70 MB

_build_lock = threading.Lock()  # keras's seeding is global: build one model at a time


class _Trainer:
    """A Keras model, its optimizer and the traced functions that train and evaluate it."""

    def __init__(self, settings: Settings, n_cols: int):
        self.n_cols = n_cols
        self.model, self.optimizer = _fresh_model(settings, n_cols)
        self.fresh = True
        # traced at their first call, which fit makes under _regviz_graph_options like every other
        functions = epoch_functions(self.model, self.optimizer, n_cols, settings.batch_size)
        self.step, self.run_epoch = functions
        self._evaluate = eval_function(self.model)

    def reset(self, settings: Settings) -> None:
        """Every variable as a newly built model and optimizer for these settings have it."""
        if self.fresh:  # built for this run
            self.fresh = False
            return
        model, optimizer = _fresh_model(settings, self.n_cols)
        mine, new = self.model.variables + self.optimizer.variables, model.variables + optimizer.variables
        for variable, value in zip(mine, new, strict=True):
            variable.assign(value)
        if self.step is not None:
            self.step.reset()

    def evaluate(self, x_csr, y):
        """Validation predictions and data loss, penalty and weight statistics of the current weights."""
        a1 = tf.raw_ops.SparseMatrixMatMul(a=x_csr, b=self.model.layers[0].kernel.value)
        return self._evaluate(a1, y)


def _architecture(settings: Settings, n_cols: int) -> tuple:
    """What the traced functions depend on; not the seed, epochs, data or learning rate (a variable)."""
    s = settings
    return (n_cols, s.depth, s.width, s.l1, s.l2, s.dropout, s.optimizer, s.batch_size)


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
            trainer = self._idle[key].pop() if self._idle.get(key) else None
        trainer = trainer or _Trainer(settings, n_cols)
        trainer.reset(settings)
        try:
            yield trainer
        finally:
            self._give_back(key, trainer)

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
