"""``keras.layers.Flatten``: a no-op on the engine's channels-last layout (Keras order)."""

import dataclasses
from typing import ClassVar

import numpy as np

from tess_keras.export.layers.base import LayerKind


@dataclasses.dataclass
class FlattenSpec:
    """Flatten: a no-op on the engine's channels-last layout (Keras order)."""

    kind: ClassVar[str] = "flatten"
    name: str
    in_shape: tuple
    out_shape: tuple


class FlattenKind(LayerKind):
    name = "flatten"
    keras_name = "Flatten"
    spec_type = FlattenSpec

    def accepts(self, block):
        import keras

        return isinstance(block, keras.layers.Flatten)

    def lower(self, block, ctx):
        return FlattenSpec(block.name, ctx.shape, (int(np.prod(ctx.shape)),))

    def describe(self, layer):
        return f"{layer.name}: flatten {list(layer.in_shape)} -> {list(layer.out_shape)} (no-op, HWC order)"

    def golden_step(self, engine, layer, x, labels):
        return x.reshape(engine.batch, -1)

    def engine_context(self, layer, gen):
        return None  # the next layer reads the same bytes: no call, no buffer


KIND = FlattenKind()
