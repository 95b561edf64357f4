"""Backpropagation through time with the psi surrogate (spec §3)."""

import keras
import tensorflow as tf

from tess_keras.rules.base import LearningRule, loss_scale, scaled, step_cross_entropy


@keras.saving.register_keras_serializable(package="tess_keras")
class BPTT(LearningRule):
    """The network unrolled over T; gradient of the per-step cross-entropy,
    summed over time and batch, through time and layers. The spike's
    derivative is psi (``tess_keras.neurons.spike``). Memory grows with T."""

    name = "bptt"

    def compute_gradients(self, model, inputs, labels):
        targets = tf.one_hot(tf.cast(labels, tf.int32), model.num_classes)
        batch = tf.shape(inputs)[0]
        with tf.GradientTape() as tape:
            kernels = model.effective_kernels()

            def body(t, x_t, states, carry):
                logits_sum, ce_sum = carry
                logits, states, _, _ = model.forward_step(x_t, states, kernels, training=True)
                return states, (logits_sum + logits, ce_sum + step_cross_entropy(logits, targets))

            carry = (tf.zeros((batch, model.num_classes)), tf.constant(0.0))
            logits_sum, ce_sum = model.time_loop(inputs, body, carry)
            # mixed_float16: scaled so the float16 backward pass does not underflow (the optimizer unscales).
            objective = scaled(ce_sum, loss_scale(model))
        grads = tape.gradient(objective, model.trainable_variables)
        return grads, ce_sum, logits_sum
