"""A trainer's penalty factors and dropout rate as variables, so that one trace serves every value.

Keras bakes `regularizers.l2(0.001)` and `Dropout(0.5)` into a traced function as constants: each new
slider value would trace the training functions again, which costs the book's 16-16 model 0.7 s, ten
of its epochs. A trainer's model swaps them for the same arithmetic on variables: a penalty term is
present or not by whether its factor is nonzero (as Keras's `l1`, `l2` and `l1_l2` are), and a run
assigns the values. The results are bit for bit those of Keras's own objects (tests check it):

- the penalty is `l1 * sum(|w|)`, `l2 * sum(w²)` or `0 + l1 * sum(|w|) + l2 * sum(w²)`, in float32;
- dropout keeps a unit where a stateless uniform draw with the layer's seed is `>= rate`, and scales
  it by `1 / (1 - rate)` rounded once to float32, as `tf.nn.experimental.stateless_dropout` does with
  a Python rate (with a tensor rate it divides instead, which differs in the last bit).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from regviz.model import hidden_layers
from regviz.settings import Settings
from regviz.training.tf_private import replace_call, replace_regularizer


def structure(settings: Settings) -> tuple[bool, bool, bool]:
    """What a trace depends on: which penalty terms exist, and whether dropout layers do."""
    return settings.l1 > 0, settings.l2 > 0, settings.dropout > 0


class Factors:
    """The variables a trainer's model reads its l1, l2 and dropout rate from (see the module's docstring)."""

    def __init__(self, model: keras.Sequential, settings: Settings):
        self.structure = structure(settings)
        self.l1 = tf.Variable(0.0, trainable=False, name="l1")
        self.l2 = tf.Variable(0.0, trainable=False, name="l2")
        self.rate = tf.Variable(0.0, trainable=False, name="dropout_rate")
        self.scale = tf.Variable(1.0, trainable=False, name="dropout_scale")
        uses_l1, uses_l2, _ = self.structure
        for layer in hidden_layers(model):
            if layer.kernel.regularizer is not None:
                replace_regularizer(layer.kernel, _Penalty(self, uses_l1, uses_l2))
        for layer in model.layers:
            if isinstance(layer, layers.Dropout):
                replace_call(layer, _dropout_call(self))
        self.assign(settings)

    def assign(self, settings: Settings) -> None:
        """This run's values (the structure must be the one the model was built with)."""
        if structure(settings) != self.structure:
            have, want = structure(settings), self.structure
            raise ValueError(f"settings {have} do not fit a trainer built for {want}")
        self.l1.assign(settings.l1)
        self.l2.assign(settings.l2)
        self.rate.assign(settings.dropout)
        # as tensorflow computes it from a Python rate: in double precision, rounded once to float32
        self.scale.assign(1 / (1 - settings.dropout) if settings.dropout else 1.0)


class _Penalty:
    """Keras's L1 / L2 / L1L2 arithmetic on the trainer's factor variables."""

    def __init__(self, factors: Factors, uses_l1: bool, uses_l2: bool):
        self.factors, self.uses_l1, self.uses_l2 = factors, uses_l1, uses_l2

    def __call__(self, x):
        l1 = tf.cast(self.factors.l1, x.dtype) * tf.reduce_sum(tf.abs(x)) if self.uses_l1 else None
        l2 = tf.cast(self.factors.l2, x.dtype) * tf.reduce_sum(tf.square(x)) if self.uses_l2 else None
        if l1 is not None and l2 is not None:  # keras's l1_l2 starts from zero: 0 + a is a, exactly
            return tf.constant(0.0, x.dtype) + l1 + l2
        return l1 if l1 is not None else l2


def _dropout_call(factors: Factors):
    def call(layer, inputs, training=False):
        if not training:
            return inputs
        seed = layer.seed_generator.next()  # the draw keras's dropout makes, cast as its backend casts
        if seed.dtype != tf.int32:
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        kept = tf.random.stateless_uniform(tf.shape(inputs), seed=seed, dtype=inputs.dtype) >= factors.rate
        return tf.where(kept, inputs * tf.cast(factors.scale, inputs.dtype), tf.zeros([], inputs.dtype))

    return call
