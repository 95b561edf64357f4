"""Scaled weight standardisation with a learnable per-channel gain (spec §4).

    W' = g * (W - mean(W)) / sqrt(var(W) * fan_in + eps)

mean and var are taken per output channel over every other axis, so each
output neuron sees unit-norm-ish weights whatever the layer's width.
"""

import tensorflow as tf

WS_EPSILON = 1e-4


def standardize_kernel(kernel, gain, epsilon=WS_EPSILON):
    """Standardise ``kernel`` (last axis = output channels) and scale by ``gain``."""
    axes = list(range(len(kernel.shape) - 1))
    fan_in = 1
    for size in kernel.shape[:-1]:
        fan_in *= int(size)
    mean, var = tf.nn.moments(kernel, axes=axes, keepdims=True)
    return gain * (kernel - mean) * tf.math.rsqrt(var * float(fan_in) + epsilon)
