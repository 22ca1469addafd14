"""The private TensorFlow and Keras APIs regviz relies on, fenced into one file, each with a fallback."""

from __future__ import annotations

import contextlib
import random

import keras
import numpy as np
import tensorflow as tf


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
