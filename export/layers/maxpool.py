"""``keras.layers.MaxPooling2D`` on binary spike maps: a logical OR over each window.

Its gradient (``max_pool_route``) also carries a conv layer's learning signal back
from the block output (lsg_source "block").
"""

import dataclasses
from typing import ClassVar

import numpy as np

from tess_keras.export.layers.base import BudgetRow, ExportError, LayerKind, window_output


@dataclasses.dataclass
class PoolSpec:
    """MaxPooling2D on binary spike maps (a logical OR over the window)."""

    kind: ClassVar[str] = "maxpool"
    name: str
    in_shape: tuple
    out_shape: tuple
    pool: tuple
    stride: tuple
    pad: tuple  # (top, left)


def pool_output(pool, shape):
    """(H', W', C) of a Keras ``MaxPooling2D`` on an [H, W, C] map."""
    h, w, c = shape
    oh, _ = window_output(h, pool.pool_size[0], pool.strides[0], pool.padding)
    ow, _ = window_output(w, pool.pool_size[1], pool.strides[1], pool.padding)
    return (oh, ow, c)


def _pool_windows(layer, x, fill):
    """The pool's window offsets (row-major) as strided views of ``x`` padded with ``fill``."""
    ph, pw = layer.pool
    sh, sw = layer.stride
    pt, pl = layer.pad
    oh, ow, _ = layer.out_shape
    h, w = layer.in_shape[:2]
    pads = ((0, 0), (pt, max((oh - 1) * sh + ph - h - pt, 0)), (pl, max((ow - 1) * sw + pw - w - pl, 0)), (0, 0))
    padded = np.pad(x, pads, constant_values=fill)
    views = [
        (slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
        for i in range(ph)
        for j in range(pw)
    ]
    return padded, views


def max_pool(layer, x):
    """The pool of the spike maps ``x`` [batch, H, W, C] (padding never wins)."""
    padded, views = _pool_windows(layer, x, 0)
    out = np.zeros((len(x),) + tuple(layer.out_shape), np.int64)
    for view in views:
        out = np.maximum(out, padded[view])
    return out


def max_pool_route(layer, x, g):
    """The max-pool's gradient: each window's ``g`` goes to the window's first
    maximum of ``x`` in row-major order (padding never wins); overlapping
    windows add up. Integer, exact."""
    padded, views = _pool_windows(layer, x, -1)
    peak = max_pool(layer, x)
    taken = np.zeros(peak.shape, bool)
    routed = np.zeros(padded.shape, np.int64)
    for view in views:
        wins = (padded[view] == peak) & ~taken
        taken |= wins
        routed[view] += np.where(wins, g, 0)
    pt, pl = layer.pad
    h, w = layer.in_shape[:2]
    return routed[:, pt : pt + h, pl : pl + w, :]


class MaxPoolKind(LayerKind):
    name = "maxpool"
    keras_name = "MaxPooling2D"
    spec_type = PoolSpec

    def accepts(self, block):
        import keras

        return isinstance(block, keras.layers.MaxPooling2D)

    def lower(self, block, ctx):
        if not ctx.spikes:
            raise ExportError(f"layer {block.name} (MaxPooling2D) on analog input is not supported; "
                              "put it after a spiking layer.")
        shape = ctx.shape
        if len(shape) != 3 or getattr(block, "data_format", "channels_last") != "channels_last":
            raise ExportError(f"layer {block.name} (MaxPooling2D) needs a channels-last [H, W, C] spike map.")
        ph, pw = block.pool_size
        sh, sw = block.strides
        h, w, c = shape
        _, pt = window_output(h, ph, sh, block.padding)
        _, pl = window_output(w, pw, sw, block.padding)
        return PoolSpec(block.name, shape, pool_output(block, shape), (ph, pw), (sh, sw), (pt, pl))

    def describe(self, layer):
        return f"{layer.name}: max pool {layer.pool}/{layer.stride}, {list(layer.in_shape)} -> {list(layer.out_shape)}"

    def golden_step(self, engine, layer, x, labels):
        return max_pool(layer, x)

    def budget_row(self, layer):
        n = int(np.prod(layer.out_shape))
        return BudgetRow(layer.name, 0, n, f"output spikes {n} B")

    # -- generated engine -------------------------------------------------------------
    def engine_defaults(self, spec):
        return {"pools": []}

    def template_values(self, layer, index):
        """The pool's template values (``index``: its place among the pools, ``kPools``); a
        learning layer whose LSG reads the pool's output holds them too (``block``)."""
        h, w, ch = layer.in_shape
        oh, ow, _ = layer.out_shape
        return dict(
            name=layer.name, c=self.c_symbol(layer), index=index, summary=self.describe(layer),
            N=int(np.prod(layer.out_shape)), H=h, W=w, C=ch, OH=oh, OW=ow, PH=layer.pool[0], PW=layer.pool[1],
            SH=layer.stride[0], SW=layer.stride[1], PT=layer.pad[0], PL=layer.pad[1],
        )

    def engine_context(self, layer, gen):
        pool = self.template_values(layer, gen.ordinal(layer.name))
        gen.append("pools", pool)
        gen.call("TESS_CALL_POOL", pool["index"], f"{pool['c']}_step({gen.current})")
        gen.output(f"{pool['c']}_out", ("TESS_SOURCE_POOL", pool["index"]))
        return pool


KIND = MaxPoolKind()
