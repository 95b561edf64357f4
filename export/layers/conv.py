"""``SpikingConv2D``: a LIF convolution on a channels-last [H, W, C] map.

The LSG pools the layer's spike map (or, with lsg_source "block", the following
max-pool's) into ``lsg_pool`` x ``lsg_pool`` adaptive cells.
"""

import numpy as np

from tess_keras.export.layers import maxpool
from tess_keras.export.layers.base import ExportError, window_output
from tess_keras.export.layers.fixed_point import rescale, softmax_error
from tess_keras.export.layers.spiking import SpikingKind, adaptive_windows


def im2col(x, layer):
    """Patches [batch, OH, OW, K*K*Cin] (tap order kh, kw, ci like the kernel),
    zero padded, as float64: integer products and sums here stay far below
    2**53, so float64 BLAS gives the exact integers."""
    k, s = layer.kernel_size, layer.stride
    pt, pl = layer.pad
    oh, ow = layer.out_shape[:2]
    h, w = layer.in_shape[:2]
    pad_b = max((oh - 1) * s + k - h - pt, 0)
    pad_r = max((ow - 1) * s + k - w - pl, 0)
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), (pt, pad_b), (pl, pad_r), (0, 0)))
    taps = [
        padded[:, kh : kh + s * (oh - 1) + 1 : s, kw : kw + s * (ow - 1) + 1 : s, :]
        for kh in range(k)
        for kw in range(k)
    ]
    return np.concatenate(taps, axis=-1)


class ConvKind(SpikingKind):
    name = "conv"
    keras_name = "SpikingConv2D"

    def accepts(self, block):
        from tess_keras.layers import SpikingConv2D

        return isinstance(block, SpikingConv2D)

    def geometry(self, block, ctx):
        import keras

        shape = ctx.shape
        if len(shape) != 3:
            raise ExportError(f"layer {block.name} (SpikingConv2D) needs a [H, W, C] input, got {shape}.")
        k, s = block.kernel_size, block.strides
        h, w, _ = shape
        oh, pt = window_output(h, k, s, block.padding)
        ow, pl = window_output(w, k, s, block.padding)
        out_shape = (oh, ow, block.filters)
        fields = dict(kind="conv", kernel_size=k, stride=s, pad=(pt, pl))
        pool = block.lsg_pool
        lsg_from, lsg_shape = None, out_shape
        if ctx.rule["lsg_source"] == "block" and isinstance(ctx.following, keras.layers.MaxPooling2D):
            lsg_from, lsg_shape = ctx.following.name, maxpool.pool_output(ctx.following, out_shape)
        if pool > 255:
            raise ExportError(f"layer {block.name} (SpikingConv2D): lsg_pool={pool} is above the engine's 255.")
        cells = (adaptive_windows(lsg_shape[0], pool), adaptive_windows(lsg_shape[1], pool))
        return out_shape, fields, pool, cells, lsg_from, lsg_shape

    def geometry_text(self, layer):
        return f"{layer.kernel_size}x{layer.kernel_size}/{layer.stride} pad {layer.pad}"

    def columns(self, layer, x):
        return im2col(x, layer)

    def learning_signal(self, engine, layer, spikes, labels):
        """The sum of the signals of the LSG cells each position lies in (adaptive windows
        may overlap). Cell spike counts and cell signals are weighted by ``L / area`` (exact
        integers); the common 1/(n*L) sits in the LSG and learning-rate multipliers."""
        k = layer.lsg_pool
        sign = layer.lsg_sign.astype(np.int64)
        ch = layer.lsg_shape[-1]
        weight = np.asarray(layer.lsg_weight, np.int64)
        cells = np.zeros((engine.batch, ch, k, k), np.int64)
        for i, (r0, r1) in enumerate(layer.lsg_rows):
            for j, (c0, c1) in enumerate(layer.lsg_cols):
                cells[:, :, i, j] = spikes[:, r0:r1, c0:c1, :].sum(axis=(1, 2)) * weight[i, j]
        z = rescale(cells.reshape(engine.batch, -1) @ sign.T, layer.lsg_mult, layer.lsg_shift)
        g = (softmax_error(z, labels) @ sign).reshape(engine.batch, ch, k, k) * weight
        out = np.zeros((engine.batch,) + tuple(layer.lsg_shape), np.int64)
        for i, (r0, r1) in enumerate(layer.lsg_rows):
            for j, (c0, c1) in enumerate(layer.lsg_cols):
                out[:, r0:r1, c0:c1, :] += g[:, None, None, :, i, j]
        return out

    def tflm_current(self, block, kernel, h):
        import tensorflow as tf

        return tf.nn.conv2d(h, kernel, block.strides, block.padding.upper())

    # -- generated engine -------------------------------------------------------------
    def engine_defaults(self, spec):
        return dict(super().engine_defaults(spec), any_conv_learn=False)

    def engine_geometry(self, layer):
        h, w, ci = layer.in_shape
        oh, ow, _ = layer.out_shape
        return dict(H=h, W=w, CI=ci, OH=oh, OW=ow, K=layer.kernel_size, S=layer.stride, PT=layer.pad[0],
                    PL=layer.pad[1])

    def engine_taps(self, layer):
        return layer.kernel_size**2 * layer.in_shape[2]

    def engine_mask_words(self, layer):
        h, w, ci = layer.in_shape
        return h * w * ((ci + 31) // 32)

    def engine_lsg_cells(self, layer):
        """Also the first/last cell row (column) of every map row (column) and each cell's
        weight L / area (adaptive windows, possibly overlapping)."""
        values = super().engine_lsg_cells(layer)

        def spans(windows, size):
            inside = [[i for i, (a, b) in enumerate(windows) if a <= y < b] for y in range(size)]
            return [min(cells) for cells in inside], [max(cells) for cells in inside]

        values["rlo"], values["rhi"] = spans(layer.lsg_rows, values["LH"])
        values["clo"], values["chi"] = spans(layer.lsg_cols, values["LW"])
        values["cell_weight"] = [int(v) for v in np.asarray(layer.lsg_weight).ravel()]
        return values

    def engine_context(self, layer, gen):
        values = super().engine_context(layer, gen)
        if layer.learn:
            gen.values["any_conv_learn"] = True
        return values


KIND = ConvKind()
