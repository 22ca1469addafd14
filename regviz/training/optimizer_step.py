"""The optimizer's step as one TensorFlow kernel per weight: Keras's RMSprop and Adam updates, fused.

Why: Keras writes RMSprop's update as about ten small ops per weight (square, scale, add, assign,
sqrt, divide, ...). On the book's 16-unit model each op costs more to dispatch than to compute, and
the update took a fifth of an epoch. TensorFlow's `ResourceApplyRMSProp` and `ResourceApplyAdam`
compute the same update in one pass over each weight, on the optimizer's own slot variables, so the
optimizer stays the Keras object the settings built (its learning rate, iterations and slots). The
update is the same formula as Keras's; only float rounding differs, which `tests/test_optimizer_step.py`
checks against Keras's `optimizer.apply`.

Optimizers or options without a fused form here (SGD, momentum, clipping, EMA, weight decay, ...)
get None, and the caller takes Keras's own `optimizer.apply`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from regviz.training.tf_private import adam_slots, rmsprop_slots

_UNFUSED_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "loss_scale_factor")


class FusedStep:
    """optimizer.apply(grads, variables) for one fixed list of variables, one kernel per variable."""

    def __init__(self, optimizer: keras.optimizers.Optimizer, variables: list):
        self.optimizer = optimizer
        self.targets = list(variables)
        if isinstance(optimizer, keras.optimizers.RMSprop):
            self._kernel = self._rmsprop
            self.slots = rmsprop_slots(optimizer, variables)
            # the kernel always keeps a momentum slot; with momentum 0 it holds the last increment
            self.variables = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in variables]
        else:
            self._kernel = self._adam
            self.slots = adam_slots(optimizer, variables)
            self.variables = []

    def __call__(self, grads) -> None:
        """One step: every variable updated from its gradient, then the optimizer's iteration count."""
        self._kernel(grads)
        self.optimizer.iterations.assign_add(1)

    def reset(self) -> None:
        """Zero this step's own state (the optimizer's slots are the optimizer's to reset)."""
        for v in self.variables:
            v.assign(tf.zeros_like(v))

    def _rmsprop(self, grads):
        o = self.optimizer
        lr, rho, eps = _f32(o.learning_rate), _f32(o.rho), _f32(o.epsilon)
        kernels = zip(self.targets, self.slots, self.variables, grads, strict=True)
        for target, (velocity,), moment, g in kernels:
            tf.raw_ops.ResourceApplyRMSProp(
                var=target.value.handle, ms=velocity.value.handle, mom=moment.handle,
                lr=lr, rho=rho, momentum=_f32(0.0), epsilon=eps, grad=g,
            )  # fmt: skip

    def _adam(self, grads):
        o = self.optimizer
        step = _f32(o.iterations + 1)  # keras counts the step being taken
        b1, b2 = _f32(o.beta_1), _f32(o.beta_2)
        b1_power, b2_power = tf.pow(b1, step), tf.pow(b2, step)
        lr, eps = _f32(o.learning_rate), _f32(o.epsilon)
        for target, (m, v), g in zip(self.targets, self.slots, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(
                var=target.value.handle, m=m.value.handle, v=v.value.handle,
                beta1_power=b1_power, beta2_power=b2_power, lr=lr, beta1=b1, beta2=b2, epsilon=eps, grad=g,
            )  # fmt: skip


def fused_step(optimizer: keras.optimizers.Optimizer, variables: list) -> FusedStep | None:
    """A fused step for this built optimizer and its variables, or None where Keras's apply must run."""
    if any(getattr(optimizer, name, None) for name in _UNFUSED_OPTIONS):
        return None
    if optimizer.use_ema or optimizer.gradient_accumulation_steps:
        return None
    if any(v.dtype != "float32" or v.constraint is not None for v in variables):
        return None
    if type(optimizer) is keras.optimizers.RMSprop:
        return FusedStep(optimizer, variables) if not optimizer.momentum and not optimizer.centered else None
    if type(optimizer) is keras.optimizers.Adam:
        return FusedStep(optimizer, variables) if not optimizer.amsgrad else None
    return None


def _f32(value) -> tf.Tensor:
    return tf.cast(value, tf.float32)
