"""What every learning rule provides to ``SpikingSequential.train_step``."""

import tensorflow as tf


class LearningRule:
    """Base class: turns one batch into one gradient per trainable variable.

    ``compute_gradients(model, inputs, labels)`` returns
    ``(gradients, cross_entropy_sum, logits_sum)`` where ``gradients`` is
    aligned with ``model.trainable_variables`` and the loss is the per-step
    cross-entropy summed over time and batch. Every rule hands the optimizer
    updates summed over time and batch (spec §2), so their scales match.
    """

    name = None

    def compute_gradients(self, model, inputs, labels):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def loss_scale(model):
    """The factor every error signal is multiplied by before it meets float16
    ops: the dynamic scale of the model's ``LossScaleOptimizer`` (Keras wraps
    the optimizer in one for ``mixed_float16``), which divides the updates by
    it again and skips steps that overflowed. ``None`` otherwise."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.cast(optimizer.scale_loss(1.0), tf.float32)
    return None


def scaled(value, scale):
    return value if scale is None else value * scale


def readout_gradients(readout, features, logits, targets, scale=None):
    """Gradient of the summed step cross-entropy w.r.t. the readout's weights,
    on detached inputs: ``dW = x^T (softmax(z) - y)``, ``db = sum(softmax(z) - y)``
    (times ``scale``, see ``loss_scale``), in float32."""
    error = scaled(tf.nn.softmax(tf.cast(logits, tf.float32)) - targets, scale)
    features = tf.cast(features, tf.float32)
    grads = [tf.matmul(features, error, transpose_a=True)]
    if readout.use_bias:
        grads.append(tf.reduce_sum(error, axis=0))
    return grads


def step_cross_entropy(logits, targets):
    return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32)))


def align_gradients(model, grads_by_variable):
    """Order gradients like ``model.trainable_variables`` (zeros if absent)."""
    out = []
    for variable in model.trainable_variables:
        grad = grads_by_variable.get(id(variable))
        out.append(tf.zeros_like(variable) if grad is None else tf.cast(grad, variable.dtype))
    return out

