"""The private TensorFlow and Keras APIs regviz relies on, fenced into one file.

Each one says why it is needed and the versions it was checked on; where a public way exists it is the
fallback. Nothing else in regviz imports tensorflow.python or keras.src, reads a private attribute of a
TensorFlow or Keras object, or patches one (tests/test_structure.py checks it). When TensorFlow or Keras
is upgraded, these are the places to check again.
"""

from __future__ import annotations

import contextlib
import random
import types
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

# why: a CSR matrix taken out of a TensorList carries no dense shape, and SparseMatrixMatMul needs one
# to trace; no public API sets a variant's handle data. Checked on TensorFlow 2.21.
from tensorflow.python.ops import handle_data_util
from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops

_CSR_HANDLE = sparse_csr_matrix_ops._create_handle_data_proto(  # a float32 matrix of any shape
    tf.TensorShape([None, None]).as_proto(), tf.float32.as_datatype_enum
)


@contextlib.contextmanager
def regviz_graph_options():
    """Grappler off for the functions this thread calls until the block ends.

    Its rewrites do not make these loops faster, and optimising them costs a new model 0.1 s before
    its first epoch. What changes is the calling thread's function-call options (what a `tf.function`
    call hands to the runtime); the process-wide settings, and with them any other code such as a
    plain `model.fit`, are untouched.
    """
    try:
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - a tensorflow without it keeps grappler on
        yield
        return
    ctx = context.context()
    old = ctx.function_call_options
    config = tf.compat.v1.ConfigProto.FromString(old.config_proto_serialized)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    ctx.function_call_options = context.FunctionCallOptions(old.executor_type, config)
    try:
        yield
    finally:
        ctx.function_call_options = old


def seed_keras(seed: int) -> None:
    """keras.utils.set_random_seed(seed) for everything a Keras model draws, but TensorFlow's global seed.

    Setting that seed clears TensorFlow's kernel caches, which made the next epoch of every pooled
    trainer 45 ms slower; nothing regviz runs draws from it (initial weights and dropout take their
    seeds from Python's `random`, and batch orders come from NumPy). Keras's global seed state is
    reset as set_random_seed resets it; tests check both give the same model.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # pragma: no cover - another keras: the public way, slower
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def give_csr_shape(matrix) -> None:
    """Mark a variant taken from a TensorList as a float32 CSR matrix, so the sparse-matrix ops trace.

    Why private: TensorFlow's own sparse-matrix ops build and set this handle data with the same calls.
    Checked on TensorFlow 2.21."""
    handle_data_util.set_handle_data(matrix, _CSR_HANDLE)


def rmsprop_slots(optimizer: keras.optimizers.RMSprop, variables: list) -> list[tuple]:
    """(velocity,) of each variable: the slot Keras's RMSprop keeps the mean square of gradients in.

    Why private: Keras 3 has no public accessor from a variable to its optimizer slots, and the fused
    kernel must update the optimizer's own. Checked on Keras 3.15."""
    index = optimizer._get_variable_index
    return [(optimizer._velocities[index(v)],) for v in variables]


def adam_slots(optimizer: keras.optimizers.Adam, variables: list) -> list[tuple]:
    """(first moment, second moment) of each variable, as Keras's Adam keeps them.

    Why private: as for rmsprop_slots. Checked on Keras 3.15."""
    index = optimizer._get_variable_index
    return [(optimizer._momentums[index(v)], optimizer._velocities[index(v)]) for v in variables]


def replace_regularizer(variable, regularizer: Callable) -> None:
    """Have a built layer's weight read its penalty from this callable instead of its Keras regularizer.

    Why: the layer's `losses` call the variable's regularizer at every step; setting it after the layer
    is built is not a documented use (Keras sets it once in `add_weight`). Checked on Keras 3.15."""
    variable.regularizer = regularizer


def replace_call(layer: keras.layers.Layer, call: Callable) -> None:
    """Have one layer object run call(layer, inputs, training) instead of its class's own `call`.

    Why: an instance attribute shadows the class's method when Keras's `__call__` looks `call` up,
    which Keras does not document. Checked on Keras 3.15."""
    layer.call = types.MethodType(call, layer)
