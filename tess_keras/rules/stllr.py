"""S-TLLR: TESS's traces with a spatially global learning signal (spec §3)."""

import keras
import tensorflow as tf

from tess_keras.rules.base import scaled, step_cross_entropy
from tess_keras.rules.tess import TESS


@keras.saving.register_keras_serializable(package="tess_keras")
class STLLR(TESS):
    """Same traces and update as ``TESS``, but ``m^l[t]`` is the step's
    cross-entropy error back-propagated through the layers above at step t
    (spike derivative replaced by psi; no path through time: the previous
    step's states enter as constants). The LSG bases are not used."""

    name = "stllr"

    def learning_signals(self, model, x_t, states, kernels, targets, bases, scale=None):
        with tf.GradientTape() as tape:
            # Watching the kernels makes the tape record this step's graph;
            # gradients are only asked of the spikes.
            tape.watch(kernels)
            logits, new_states, records, features = model.forward_step(x_t, states, kernels, training=True)
            loss = scaled(step_cross_entropy(logits, targets), scale)
        signals = tape.gradient(loss, [record.spikes for record in records])
        signals = [tf.zeros_like(r.spikes) if s is None else s for s, r in zip(signals, records)]
        return logits, new_states, records, features, signals
