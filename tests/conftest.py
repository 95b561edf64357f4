"""Shared fixtures: tiny spiking networks with controlled weights and inputs,
plus their translation into the NumPy reference's block lists."""

import collections
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import reference_snn as ref  # noqa: E402

NUM_CLASSES = 4


def architectures(ws):
    """name -> (per-step input shape, input kind, hidden layers)."""
    import keras

    from tess_keras.layers import SpikingConv2D, SpikingDense

    return {
        # Conv -> max-pool -> dense: the dense layer's q trace sees pooled spikes.
        "conv": ((6, 6, 2), "spikes", [
            SpikingConv2D(4, 3, lsg_pool=2, weight_standardization=ws, name="conv_a"),
            keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
            SpikingDense(5, weight_standardization=ws, name="dense_b")]),
        # 5x5 maps: adaptive-pool windows overlap (5 -> 2 and 5 -> 3).
        "conv_odd": ((5, 5, 2), "analog", [
            SpikingConv2D(4, 3, lsg_pool=2, weight_standardization=ws, name="conv_a"),
            SpikingConv2D(3, 3, lsg_pool=3, weight_standardization=ws, name="conv_b"),
            keras.layers.MaxPooling2D(2), keras.layers.Flatten()]),
        "dense": ((7,), "analog", [
            SpikingDense(5, weight_standardization=ws, name="dense_a"),
            SpikingDense(4, weight_standardization=ws, name="dense_b")]),
    }


Net = collections.namedtuple("Net", ["model", "x", "labels"])


def build_net(arch, rule="tess", ws=False, seed=0, batch=3, steps=4):
    """A built SpikingSequential with weights scaled so that neurons fire
    sometimes and sit inside psi's support often, and matching inputs."""
    from tess_keras.layers import Readout
    from tess_keras.models import SpikingSequential

    input_shape, input_kind, hidden = architectures(ws)[arch]
    rng = np.random.default_rng(seed)
    model = SpikingSequential(hidden + [Readout(NUM_CLASSES, name="readout")], rule=rule)
    model.build((None, steps) + input_shape)
    for layer in model.spiking_layers:
        fan_in = int(np.prod(layer.kernel.shape[:-1]))
        active_inputs = 0.5 * fan_in
        layer.kernel.assign(rng.normal(0.5 / active_inputs, 0.8 / np.sqrt(active_inputs), layer.kernel.shape))
        if ws:
            layer.gain.assign(rng.uniform(1.2, 2.2, layer.gain.shape))
    model.readout.kernel.assign(rng.normal(0.0, 0.7, model.readout.kernel.shape))
    model.readout.bias.assign(rng.normal(0.0, 0.3, model.readout.bias.shape))
    shape = (batch, steps) + input_shape
    x = (rng.random(shape) < 0.5) if input_kind == "spikes" else rng.random(shape)
    labels = rng.integers(0, NUM_CLASSES, batch)
    return Net(model, x.astype(np.float32), labels.astype(np.int32))


def reference_blocks(model):
    """The model's blocks and readout as NumPy float64 arrays for reference_snn
    (weight standardisation applied with the reference's own formula)."""
    import keras

    from tess_keras.layers import SpikingConv2D, SpikingDense

    blocks = []
    for layer in model.blocks[:-1]:
        if isinstance(layer, (SpikingConv2D, SpikingDense)):
            w = np.asarray(layer.kernel.numpy(), np.float64)
            if layer.weight_standardization:
                w = ref.weight_standardize(w, np.asarray(layer.gain.numpy(), np.float64))
            kind = "conv" if isinstance(layer, SpikingConv2D) else "dense"
            blocks.append({"kind": kind, "w": w, "lsg_pool": layer.lsg_pool})
        elif isinstance(layer, keras.layers.MaxPooling2D):
            blocks.append({"kind": "maxpool"})
        elif isinstance(layer, keras.layers.Flatten):
            blocks.append({"kind": "flatten"})
        else:
            raise TypeError(type(layer).__name__)
    readout = (np.asarray(model.readout.kernel.numpy(), np.float64), np.asarray(model.readout.bias.numpy(), np.float64))
    return blocks, readout


def assert_close(actual, expected, what=""):
    """float32 library against float64 reference, tolerance relative to the
    quantity's own scale (learning signals are small numbers)."""
    expected = np.asarray(expected, np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    actual = np.asarray(actual, np.float64)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-7 + 1e-5 * scale, err_msg=what)


def gradients_by_variable(model, grads):
    return {id(v): np.asarray(g, np.float64) for v, g in zip(model.trainable_variables, grads)}


def assert_gradients_match(model, grads, layers, readout_dw, readout_db):
    """Every spiking layer's kernel gradient and the readout's against the
    reference; each reference dW must be non-trivial for the check to count."""
    by_variable = gradients_by_variable(model, grads)
    for layer, expected in zip(model.spiking_layers, layers):
        assert np.abs(expected["dW"]).max() > 1e-4
        assert_close(by_variable[id(layer.kernel)], expected["dW"], f"dW {layer.name}")
    assert_close(by_variable[id(model.readout.kernel)], readout_dw, "readout dW")
    assert_close(by_variable[id(model.readout.bias)], readout_db, "readout db")


def check_meaningful(rec):
    """The network must be in a regime where the test can fail: neurons fire
    sometimes, psi is often non-zero, and no membrane sits so close to the
    threshold that float32 and float64 could disagree about a spike."""
    for u, o in zip(rec["u"], rec["o"]):
        assert 0.05 < o.mean() < 0.95, o.mean()
        assert (ref.psi(u) > 0).mean() > 0.3
        assert np.abs(u - ref.V_TH).min() > 1e-5


@pytest.fixture
def make_net():
    return build_net
