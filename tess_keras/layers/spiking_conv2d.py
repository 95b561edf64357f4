"""2-D convolution synapses into soft-reset LIF neurons."""

import keras
import tensorflow as tf

from tess_keras.layers.base import SpikingLayer, adaptive_pool_matrix


@keras.saving.register_keras_serializable(package="tess_keras")
class SpikingConv2D(SpikingLayer):
    """Conv2D (channels-last, no bias) feeding LIF neurons, one step per call.

    Args:
        filters: output channels.
        kernel_size: int, square kernel side (spec: 3).
        strides: int stride.
        padding: ``"same"`` or ``"valid"``.
        lsg_pool: side ``k`` of the adaptive average pool that feeds this
            layer's learning-signal generator (spec §4: 4,2,2,2,2,2,2,1).
        **kwargs: see ``SpikingLayer``.

    Shapes:
        call(x_t, state): x_t ``[batch, H, W, C_in]`` -> spikes
        ``[batch, H', W', filters]``; state ``(u, o)`` of the spikes' shape.

    Example:
        >>> conv = SpikingConv2D(64, 3, lsg_pool=4)
        >>> spikes, state = conv(frame, conv.get_initial_state(batch))
    """

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding.lower()
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.name}: SpikingConv2D expects per-step inputs [batch, H, W, C], got shape {tuple(input_shape)}"
            )
        self._add_kernel((self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters))
        self.state_shape = tuple(self.compute_output_shape(input_shape)[1:])
        height, width = self.state_shape[:2]
        k = self.lsg_pool
        self._pool_h = tf.constant(adaptive_pool_matrix(height, k))
        self._pool_w = tf.constant(adaptive_pool_matrix(width, k))
        # Equal power-of-two windows (e.g. 32x32 -> 2x2): a reshape-and-sum
        # gives bit-identical values and gradients for 0/1 spikes (every
        # partial sum and the 1/area scale are exact) at half the einsum's cost.
        window_h, window_w = (height // k, width // k) if height and width else (0, 0)

        def power_of_two(n):
            return n > 0 and n & (n - 1) == 0

        exact = height == k * window_h and width == k * window_w and window_h * window_w <= 2048
        self._pool_window = (window_h, window_w) if exact and power_of_two(window_h * window_w) else None

    def synapse(self, inputs, kernel):
        return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper())

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def out(size):
            if size is None:
                return None
            if self.padding == "same":
                return -(-size // self.strides)
            return (size - self.kernel_size) // self.strides + 1

        return (batch, out(height), out(width), self.filters)

    def lsg_pool_spikes(self, spikes):
        # Adaptive average pool to k x k per channel, flattened channel-major
        # ([C, k, k]) as in the authors' PyTorch code.
        if self._pool_window is not None:
            k, (window_h, window_w) = self.lsg_pool, self._pool_window
            blocks = tf.reshape(spikes, (-1, k, window_h, k, window_w, self.filters))
            pooled = tf.reduce_sum(blocks, axis=(2, 4)) * (1.0 / (window_h * window_w))
            pooled = tf.transpose(pooled, (0, 3, 1, 2))
        else:
            pooled = tf.einsum("bhwc,ih,jw->bcij", spikes, self._pool_h, self._pool_w)
        return tf.reshape(pooled, (-1, self.lsg_size))

    @property
    def lsg_size(self):
        return self.filters * self.lsg_pool * self.lsg_pool

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
        }
