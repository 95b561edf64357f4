"""Learning-signal generation (LSG): TESS's local, fixed-feedback error.

Where the LSG reads (TESS_SPEC.md §2, the rule's ``lsg_source``):

- ``"block"`` (default, the authors' code): a spiking layer followed by a
  ``MaxPooling2D`` forms one block, and the LSG pools the spikes *after*
  that max-pool; the learning signal reaches the layer's neurons through the
  max-pool's gradient, which sends each window's signal to one position: the
  first maximum of the window in row-major order (PyTorch's choice among the
  ties that binary spikes always have). The routing is computed here
  explicitly (``first_max_pool``) rather than left to TensorFlow's MaxPool
  gradient kernel, so every device and the exported integer engine
  (``export/golden.py``, the generated C++) route exactly alike.
- ``"layer"``: the layer's own spikes, before any pool.
"""

import numpy as np
import tensorflow as tf

LSG_SOURCES = ("block", "layer")


def square_wave_basis(num_classes, size):
    """The fixed LSG matrix B [num_classes, size] (spec §2, authors' code).

    ``B[c, k] = sign(sin(f_c * k)) / size`` with ``f_c = linspace(50, 512, C)``
    radians per index. Rows are quasi-orthogonal square waves; column 0 is
    zero. Regenerated from ``(C, size)`` anywhere, so it needs no storage.
    """
    freqs = np.linspace(50.0, 512.0, num_classes)
    index = np.arange(size)
    return (np.sign(np.sin(freqs[:, None] * index[None, :])) / size).astype(np.float32)


def check_lsg_source(value):
    """``value`` if it is one of ``LSG_SOURCES``, else a ValueError naming the choices."""
    if value not in LSG_SOURCES:
        raise ValueError(
            f"lsg_source must be 'block' (the LSG reads the block output, after a following max-pool; the spec's "
            f"default) or 'layer' (the layer's own spikes), got {value!r}."
        )
    return value


def following_pools(model):
    """Per spiking layer of ``model``, the ``MaxPooling2D`` right after it (its
    block's pool) or None."""
    import keras

    from tess_keras.layers import SpikingLayer

    pools = []
    blocks = list(model.blocks)
    for index, layer in enumerate(blocks):
        if isinstance(layer, SpikingLayer):
            after = blocks[index + 1] if index + 1 < len(blocks) else None
            pools.append(after if isinstance(after, keras.layers.MaxPooling2D) else None)
    return pools


def _window(size, window, stride, padding):
    """(output length, padding before, padding after) of a Keras pooling axis."""
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        return out, total // 2, total - total // 2
    return (size - window) // stride + 1, 0, 0


def first_max_pool(x, pool):
    """``pool(x)`` (a Keras ``MaxPooling2D``, channels-last) whose gradient goes,
    in every window, to the first maximum in row-major order only.

    The value equals the max-pool's; padded positions never win.

    Args:
        x: ``[batch, H, W, C]`` tensor.
        pool: the ``keras.layers.MaxPooling2D`` whose geometry to use.
    """
    if getattr(pool, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"{pool.name}: the LSG's max-pool routing supports channels_last pools only.")
    (ph, pw), (sh, sw) = pool.pool_size, pool.strides
    height, width = int(x.shape[1]), int(x.shape[2])
    oh, top, bottom = _window(height, ph, sh, pool.padding)
    ow, left, right = _window(width, pw, sw, pool.padding)
    if (ph, pw) == (sh, sw) and top == bottom == left == right == 0:
        return _tiled_first_max_pool(x[:, : oh * ph, : ow * pw], ph, pw)
    padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=x.dtype.min)
    windows = [
        padded[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :] for i in range(ph) for j in range(pw)
    ]
    peak = windows[0]
    for value in windows[1:]:
        peak = tf.maximum(peak, value)
    peak = tf.stop_gradient(peak)
    taken = tf.zeros_like(peak, dtype=tf.bool)
    out = tf.zeros_like(peak)
    for value in windows:
        is_peak = tf.equal(value, peak)
        wins = tf.logical_and(is_peak, tf.logical_not(taken))
        taken = tf.logical_or(taken, is_peak)
        out += tf.where(wins, value, tf.zeros_like(value))
    return out


def _tiled_first_max_pool(x, ph, pw):
    """``first_max_pool`` for windows that tile ``x`` exactly (stride = pool size,
    no padding): TensorFlow's max-pool for the value, the first-maximum routing as a
    custom gradient (max-pools of a rank map instead of slow 6-D reductions; XLA-safe)."""
    channels = int(x.shape[-1])
    oh, ow = int(x.shape[1]) // ph, int(x.shape[2]) // pw
    # Earlier offsets of a window (row-major) rank higher; only maxima are ranked.
    order = tf.constant(np.arange(ph * pw, 0, -1, dtype=np.float32).reshape(1, 1, ph, 1, pw, 1), x.dtype)

    def window_view(t):
        return tf.reshape(t, (-1, oh, ph, ow, pw, channels))

    def broadcast(pooled):
        return pooled[:, :, None, :, None, :]

    @tf.custom_gradient
    def pool(x):
        peak = tf.nn.max_pool2d(x, (ph, pw), (ph, pw), "VALID")

        def grad(upstream):
            ranked = tf.where(tf.equal(window_view(x), broadcast(peak)), order, tf.zeros((), x.dtype))
            best = tf.nn.max_pool2d(tf.reshape(ranked, tf.shape(x)), (ph, pw), (ph, pw), "VALID")
            routed = tf.where(tf.equal(ranked, broadcast(best)), broadcast(upstream), tf.zeros((), x.dtype))
            return tf.reshape(routed, tf.shape(x))

        return peak, grad

    return pool(x)


def adaptive_average_pool(spikes, k):
    """``[batch, H, W, C]`` -> ``[batch, C*k*k]``: PyTorch's adaptive average
    pool to k x k per channel, flattened channel-major."""
    from tess_keras.layers.base import adaptive_pool_matrix

    height, width = int(spikes.shape[1]), int(spikes.shape[2])
    pool_h = tf.constant(adaptive_pool_matrix(height, k), spikes.dtype)
    pool_w = tf.constant(adaptive_pool_matrix(width, k), spikes.dtype)
    pooled = tf.einsum("bhwc,ih,jw->bcij", spikes, pool_h, pool_w)
    return tf.reshape(pooled, (-1, int(spikes.shape[-1]) * k * k))


def lsg_input(layer, spikes, pool=None):
    """``a[t]``: the pooled spikes the LSG matrix B reads. With ``pool`` (the
    block's ``MaxPooling2D``) the block output ``pool(o[t])``, else ``o[t]``."""
    if pool is None:
        return layer.lsg_pool_spikes(spikes)
    return adaptive_average_pool(first_max_pool(spikes, pool), layer.lsg_pool)


def local_learning_signal(layer, spikes, basis, targets, scale=None, pool=None):
    """``m[t] = d CE(softmax(B a[t]), y*) / d o[t]`` for one layer (times
    ``scale``, the mixed-float16 loss scale, when given).

    Args:
        layer: the spiking layer (its ``lsg_pool`` sets the k x k pool).
        spikes: its spikes ``o[t]``.
        basis: the fixed B ``[C, n]``.
        targets: one-hot labels ``[batch, C]``.
        scale: optional loss scale.
        pool: the block's ``MaxPooling2D`` when the LSG reads the block
            output (``lsg_source="block"``), else None.

    The tape sees only this layer's spikes (and its block's pool) and the
    fixed B: no weights of any other layer, no other time step.
    """
    with tf.GradientTape() as tape:
        tape.watch(spikes)
        logits = tf.matmul(lsg_input(layer, spikes, pool), basis, transpose_b=True)
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        if scale is not None:
            loss = loss * scale
    return tape.gradient(loss, spikes)
