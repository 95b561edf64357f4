"""Shared machinery of the spiking synaptic layers (Dense and Conv2D)."""

import keras
import numpy as np
import tensorflow as tf

from tess_keras import neurons
from tess_keras.layers.weight_standardization import standardize_kernel


class SpikingLayer(keras.layers.Layer):
    """A synaptic layer (no bias) feeding soft-reset LIF neurons.

    A spiking layer is a *per-time-step* layer, like a Keras RNN cell:
    ``call(x_t, state)`` returns the spikes ``o[t]`` and the new state
    ``(u[t], o[t])``. ``SpikingSequential`` runs the time loop and the
    learning rules use the pieces (``synapse``, ``effective_kernel``,
    ``lsg_pool``) directly.

    Args:
        gamma: membrane leak factor (spec: 0.5).
        v_th: firing threshold (spec: 0.6).
        weight_standardization: use scaled weight standardisation with a
            learnable per-channel gain (spec §4). If False the raw kernel is
            used.
        lsg_pool: side ``k`` of the adaptive average pool applied to this
            layer's spikes before its learning-signal generator (conv layers;
            ignored for dense layers).
        kernel_initializer: defaults to Kaiming-normal (fan_out).
        reset: the neuron's reset (``tess_keras.neurons.RESETS``); the
            spec's ``"subtract"`` (before the leak) unless imported.
    """

    def __init__(
        self,
        gamma=neurons.GAMMA,
        v_th=neurons.V_TH,
        weight_standardization=True,
        lsg_pool=2,
        kernel_initializer=None,
        reset="subtract",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.gamma = float(gamma)
        self.v_th = float(v_th)
        self.weight_standardization = bool(weight_standardization)
        self.lsg_pool = int(lsg_pool)
        self.reset = neurons.check_reset(reset)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer
            or keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
        )

    # -- parameters -----------------------------------------------------
    def _add_kernel(self, shape):
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer)
        if self.weight_standardization:
            self.gain = self.add_weight(name="gain", shape=(shape[-1],), initializer="ones")

    def effective_kernel(self):
        """The weights the neurons see: standardised and scaled, or raw."""
        if self.weight_standardization:
            return standardize_kernel(self.kernel, self.gain)
        return tf.convert_to_tensor(self.kernel)

    # -- dynamics -------------------------------------------------------
    def synapse(self, inputs, kernel):
        """Input current ``W * x`` for one time step (subclasses)."""
        raise NotImplementedError

    def get_initial_state(self, batch_size):
        zeros = tf.zeros(tf.concat([[batch_size], self.state_shape], axis=0))
        return (zeros, zeros)

    def call(self, inputs, state):
        u_prev, o_prev = state
        current = self.synapse(inputs, self.effective_kernel())
        u, o = neurons.lif_step(u_prev, o_prev, current, self.gamma, self.v_th, self.reset)
        return o, (u, o)

    # -- learning-signal generation ---------------------------------------
    def lsg_pool_spikes(self, spikes):
        """``a[t] = pool(o[t])`` flattened channel-major (subclasses)."""
        raise NotImplementedError

    @property
    def lsg_size(self):
        """Length ``n`` of the pooled spike vector fed to the LSG matrix B."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            gamma=self.gamma,
            v_th=self.v_th,
            weight_standardization=self.weight_standardization,
            lsg_pool=self.lsg_pool,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            reset=self.reset,
        )
        return config


def adaptive_pool_matrix(size, out):
    """Averaging matrix [out, size] of PyTorch's adaptive_avg_pool (1-D)."""
    matrix = np.zeros((out, size), np.float32)
    for i in range(out):
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix
