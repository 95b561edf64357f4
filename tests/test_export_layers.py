"""The exporter's layer kinds (export/layers/): one module per kind in one registry.

The registry must cover every layer the exporter accepts and refuse the others
with the exporter's clear error; every kind implements the whole interface; and
each kind's golden step equals a plain NumPy computation of the layer written
here, loop by loop, on a small random layer (the bit-exactness of the golden
model with the generated C++ lives in test_export_engine.py).
"""

import dataclasses

import numpy as np
import pytest

from tess_keras.export import golden, tflm
from tess_keras.export import layers as layer_kinds
from tess_keras.export.layers.base import LayerKind
from tess_keras.export.layers.maxpool import max_pool_route
from tess_keras.export.spec import ExportError, build_spec

KIND_NAMES = {"conv", "dense", "maxpool", "flatten", "readout"}


def every_kind_model():
    """Conv (int8 input, strided, same padding), padded overlapping max-pool, valid conv on
    spikes, flatten, dense, readout: one layer of every kind."""
    import keras

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.models import SpikingSequential

    keras.utils.set_random_seed(7)
    model = SpikingSequential(
        [
            SpikingConv2D(4, 3, strides=2, padding="same", lsg_pool=1, name="c1"),
            keras.layers.MaxPooling2D(2, strides=1, padding="same", name="p1"),
            SpikingConv2D(5, 3, padding="valid", lsg_pool=2, name="c2"),
            keras.layers.Flatten(name="flat"),
            SpikingDense(7, name="d1"),
            Readout(3, name="out"),
        ]
    )
    model.build((None, None, 9, 9, 2))
    return model


@pytest.fixture(scope="module")
def model():
    return every_kind_model()


@pytest.fixture(scope="module")
def spec(model):
    return build_spec(model, 1 / 127, time_steps=3, learning_rate=0.05)


# -- the registry ---------------------------------------------------------------------
def test_registry_covers_every_kind_the_exporter_accepts(model, spec):
    assert set(layer_kinds.KINDS) == KIND_NAMES
    assert [layer.kind for layer in spec.layers] == ["conv", "maxpool", "conv", "flatten", "dense", "readout"]
    for block, layer in zip(model.blocks, spec.layers):
        kind = layer_kinds.for_block(block)
        accepting = [k.name for k in layer_kinds.KINDS.values() if k.accepts(block)]
        assert accepting == [kind.name] == [layer.kind], block.name
        assert layer_kinds.for_spec(layer) is kind
        assert isinstance(layer, kind.spec_type)
        assert kind.keras_name == type(block).__name__
        assert kind.has_weights == hasattr(layer, "weights")
        assert kind.emits_spikes == (layer.kind in ("conv", "dense"))


def overrides(kind, method):
    return getattr(type(kind), method) is not getattr(LayerKind, method)


def test_every_kind_implements_the_whole_interface():
    """Every kind is a complete ``LayerKind``; the defaults (a layer without weights or
    state) are left only where they hold."""
    weight_methods = ["golden_init", "golden_zero_grads", "golden_update", "learned_bytes", "grad_buffers",
                      "weight_buffers", "budget_row", "tflm_constants"]
    state_methods = ["golden_reset", "step_buffers", "tflm_state_shape", "tflm_step"]
    for name, kind in layer_kinds.KINDS.items():
        assert isinstance(kind, LayerKind) and not type(kind).__abstractmethods__, name
        assert kind.name == name and kind.keras_name and dataclasses.is_dataclass(kind.spec_type), name
        if kind.has_weights:
            assert all(overrides(kind, method) for method in weight_methods), name
        if kind.emits_spikes:
            assert all(overrides(kind, method) for method in state_methods), name
    assert not overrides(layer_kinds.KINDS["flatten"], "budget_row")  # a no-op on the layout: no memory


def test_an_unknown_layer_gets_the_clear_error(model):
    import keras

    from tess_keras.layers import Readout, SpikingConv2D
    from tess_keras.models import SpikingSequential

    odd = SpikingSequential(
        [SpikingConv2D(4, 3, lsg_pool=1, name="c1"), keras.layers.AveragePooling2D(2, name="avg"),
         keras.layers.Flatten(), Readout(3)]
    )
    odd.build((None, None, 8, 8, 1))
    message = (r"layer avg \(AveragePooling2D\) cannot be exported: the on-device engine supports SpikingConv2D, "
               r"SpikingDense, MaxPooling2D, Flatten and Readout\. Replace or remove avg\.")
    with pytest.raises(ExportError, match=message):
        layer_kinds.for_block(odd.blocks[1])
    with pytest.raises(ExportError, match=message):
        build_spec(odd, 1 / 127, 4)
    with pytest.raises(ExportError, match=message):
        tflm.StepGraph(odd)


def test_each_kind_describes_its_layer(spec):
    lines = [layer_kinds.for_spec(layer).describe(layer) for layer in spec.layers]
    assert lines == [
        "c1: LIF conv 3x3/2 pad (1, 1), [9, 9, 2] -> [5, 5, 4] from int8 input, "
        "learns (q trace Q8.7, alpha_post 1, LSG after p1)",
        "p1: max pool (2, 2)/(1, 1), [5, 5, 4] -> [5, 5, 4]",
        "c2: LIF conv 3x3/1 pad (0, 0), [5, 5, 4] -> [3, 3, 5] from spikes, "
        "learns (q trace Q2.13, alpha_post 1, LSG on its own spikes)",
        "flat: flatten [3, 3, 5] -> [45] (no-op, HWC order)",
        "d1: LIF dense dense, [45] -> [7] from spikes, learns (q trace Q2.13, alpha_post 1, LSG on its own spikes)",
        "out: linear readout 7 -> 3, learns",
    ]


# -- each kind's golden step against NumPy written out --------------------------------
def plain_rescale(acc, mult, shift):
    """round(acc * mult / 2**shift), ties up, saturated to int32; per output channel."""
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    scaled = (acc * mult + (np.int64(1) << (shift - 1))) // (np.int64(1) << shift)
    return np.clip(scaled, -(2**31), 2**31 - 1)


def plain_conv(x, w, stride, pad, out_shape):
    """Sum over the kernel taps that land inside the map (zero padding)."""
    batch, height, width, _ = x.shape
    k = w.shape[0]
    oh, ow, co = out_shape
    acc = np.zeros((batch, oh, ow, co), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            for kh in range(k):
                for kw in range(k):
                    iy, ix = oy * stride + kh - pad[0], ox * stride + kw - pad[1]
                    if 0 <= iy < height and 0 <= ix < width:
                        acc[:, oy, ox] += x[:, iy, ix] @ w[kh, kw].astype(np.int64)
    return acc


def plain_lif(layer, acc, u, o):
    """u = round(gamma (u - r o) / 2**15) + I saturated to int16; o = u >= v_th."""
    current = plain_rescale(acc, layer.current_mult, layer.current_shift)
    leak = ((u - layer.reset_amount * o) * layer.gamma + (1 << 14)) >> 15
    u = np.clip(leak + current, -32768, 32767)
    return u, (u >= layer.threshold).astype(np.int64)


def random_input(layer, rng, batch):
    shape = (batch,) + tuple(layer.in_shape)
    if getattr(layer, "analog_input", False):
        return rng.integers(-127, 128, size=shape).astype(np.int64)
    return (rng.random(shape) < 0.4).astype(np.int64)


def run_kind(spec, layer, inputs):
    """The kind's golden step alone on ``inputs`` [T, batch, ...]: its outputs per step."""
    engine = golden.GoldenEngine(spec, batch=inputs.shape[1])
    kind = layer_kinds.for_spec(layer)
    outputs = []
    for x in inputs:
        outputs.append(kind.golden_step(engine, layer, x, None))
        engine.t += 1
    return engine, outputs


@pytest.mark.parametrize("name", ["c1", "c2"])
def test_conv_step_is_the_plain_convolution_and_lif(spec, name):
    layer = next(layer for layer in spec.layers if layer.name == name)
    rng = np.random.default_rng(0)
    inputs = np.stack([random_input(layer, rng, 2) for _ in range(4)])
    engine, outputs = run_kind(spec, layer, inputs)
    u = o = np.zeros((2,) + layer.out_shape, np.int64)
    for x, got in zip(inputs, outputs):
        acc = plain_conv(x, layer.weights, layer.stride, layer.pad, layer.out_shape)
        u, o = plain_lif(layer, acc, u, o)
        assert np.array_equal(got, o)
    assert np.array_equal(engine.u[name], u) and 0 < o.mean() < 1


def test_dense_step_is_the_plain_matrix_product_and_lif(spec):
    layer = next(layer for layer in spec.layers if layer.kind == "dense")
    rng = np.random.default_rng(1)
    inputs = np.stack([random_input(layer, rng, 3) for _ in range(4)])
    engine, outputs = run_kind(spec, layer, inputs)
    u = o = np.zeros((3,) + layer.out_shape, np.int64)
    for x, got in zip(inputs, outputs):
        u, o = plain_lif(layer, x @ layer.weights.astype(np.int64), u, o)
        assert np.array_equal(got, o)
    assert np.array_equal(engine.u[layer.name], u)


def pool_windows(layer):
    """(output row, output column, the window's inside positions in row-major order)."""
    (ph, pw), (sh, sw), (pt, pl) = layer.pool, layer.stride, layer.pad
    height, width = layer.in_shape[:2]
    for oy in range(layer.out_shape[0]):
        for ox in range(layer.out_shape[1]):
            cells = [(oy * sh + i - pt, ox * sw + j - pl) for i in range(ph) for j in range(pw)]
            yield oy, ox, [(y, x) for y, x in cells if 0 <= y < height and 0 <= x < width]


def test_maxpool_step_is_the_plain_window_max_and_routes_to_the_first_max(spec):
    layer = next(layer for layer in spec.layers if layer.kind == "maxpool")
    rng = np.random.default_rng(2)
    x = random_input(layer, rng, 2)
    _, (got,) = run_kind(spec, layer, x[None])
    g = rng.integers(-50, 50, size=(2,) + layer.out_shape)
    want, routed = np.zeros_like(got), np.zeros_like(x)
    for oy, ox, cells in pool_windows(layer):
        values = np.stack([x[:, y, c] for y, c in cells], axis=1)  # [batch, cells, C]
        want[:, oy, ox] = values.max(axis=1)
        first = values.argmax(axis=1)  # the first maximum, row-major
        for b in range(2):
            for ch in range(layer.out_shape[2]):
                y, c = cells[first[b, ch]]
                routed[b, y, c, ch] += g[b, oy, ox, ch]
    assert np.array_equal(got, want) and 0 < want.mean() < 1
    assert np.array_equal(max_pool_route(layer, x, g), routed)


def test_flatten_and_readout_steps(spec):
    flat, readout = spec.layers[3], spec.layers[5]
    rng = np.random.default_rng(3)
    x = random_input(flat, rng, 2)
    _, (got,) = run_kind(spec, flat, x[None])
    assert np.array_equal(got, x.reshape(2, -1))  # channels-last, Keras order
    spikes = (rng.random((3, 2, readout.in_size)) < 0.4).astype(np.int64)
    engine, outputs = run_kind(spec, readout, spikes)
    logits = [readout.bias.astype(np.int64) + s @ readout.weights.astype(np.int64) for s in spikes]
    assert all(np.array_equal(g, w) for g, w in zip(outputs, logits))
    assert np.array_equal(engine.logit_sum, sum(logits))
