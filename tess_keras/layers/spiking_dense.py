"""Fully connected synapses into soft-reset LIF neurons."""

import keras
import tensorflow as tf

from tess_keras.layers.base import SpikingLayer


@keras.saving.register_keras_serializable(package="tess_keras")
class SpikingDense(SpikingLayer):
    """Dense layer of LIF neurons (no bias), one time step per call.

    Args:
        units: number of neurons.
        **kwargs: see ``SpikingLayer`` (gamma, v_th, weight_standardization...).

    Shapes:
        call(x_t, state): x_t ``[batch, in_features]`` -> spikes
        ``[batch, units]``; state is ``(u, o)``, each ``[batch, units]``.

    Example:
        >>> layer = SpikingDense(32)
        >>> state = layer.get_initial_state(4)     # after build
        >>> spikes, state = layer(x_t, state)
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self._add_kernel((int(input_shape[-1]), self.units))
        self.state_shape = (self.units,)

    def synapse(self, inputs, kernel):
        return tf.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def lsg_pool_spikes(self, spikes):
        return spikes

    @property
    def lsg_size(self):
        return self.units

    def get_config(self):
        return {**super().get_config(), "units": self.units}
