"""Learning-signal generation (LSG): TESS's local, fixed-feedback error."""

import numpy as np
import tensorflow as tf


def square_wave_basis(num_classes, size):
    """The fixed LSG matrix B [num_classes, size] (spec §2, authors' code).

    ``B[c, k] = sign(sin(f_c * k)) / size`` with ``f_c = linspace(50, 512, C)``
    radians per index. Rows are quasi-orthogonal square waves; column 0 is
    zero. Regenerated from ``(C, size)`` anywhere, so it needs no storage.
    """
    freqs = np.linspace(50.0, 512.0, num_classes)
    index = np.arange(size)
    return (np.sign(np.sin(freqs[:, None] * index[None, :])) / size).astype(np.float32)


def local_learning_signal(layer, spikes, basis, targets, scale=None):
    """``m[t] = d CE(softmax(B pool(o[t])), y*) / d o[t]`` for one layer
    (times ``scale``, the mixed-float16 loss scale, when given).

    The tape sees only this layer's spikes and the fixed B: no weights of
    any other layer, no other time step.
    """
    with tf.GradientTape() as tape:
        tape.watch(spikes)
        logits = tf.matmul(layer.lsg_pool_spikes(spikes), basis, transpose_b=True)
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        if scale is not None:
            loss = loss * scale
    return tape.gradient(loss, spikes)
