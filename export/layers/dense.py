"""``SpikingDense``: a fully connected LIF layer on a flat input; its LSG reads all its spikes."""

import numpy as np

from tess_keras.export.layers.base import ExportError
from tess_keras.export.layers.fixed_point import rescale, softmax_error
from tess_keras.export.layers.spiking import SpikingKind


class DenseKind(SpikingKind):
    name = "dense"
    keras_name = "SpikingDense"

    def accepts(self, block):
        from tess_keras.layers import SpikingDense

        return isinstance(block, SpikingDense)

    def geometry(self, block, ctx):
        if len(ctx.shape) != 1:
            raise ExportError(f"layer {block.name} (SpikingDense) needs a flat input; add a Flatten before it.")
        out_shape = (block.units,)
        return out_shape, dict(kind="dense"), 1, (((0, 1),), ((0, 1),)), None, out_shape

    def geometry_text(self, layer):
        return "dense"

    def columns(self, layer, x):
        return x.astype(np.float64)

    def learning_signal(self, engine, layer, spikes, labels):
        sign = layer.lsg_sign.astype(np.int64)
        z = rescale(spikes @ sign.T, layer.lsg_mult, layer.lsg_shift)
        return softmax_error(z, labels) @ sign

    def tflm_current(self, block, kernel, h):
        import tensorflow as tf

        return tf.matmul(h, kernel)

    # -- generated engine -------------------------------------------------------------
    def engine_geometry(self, layer):
        return {}

    def engine_taps(self, layer):
        return layer.num_inputs

    def engine_mask_words(self, layer):
        return (layer.num_inputs + 31) // 32


KIND = DenseKind()
