"""Configs, .keras round trips, model.fit with tf.data and callbacks, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tess_keras import rules
from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
from tess_keras.models import SpikingSequential


def copy_weights(source, target):
    for s, t in zip(source.weights, target.weights):
        t.assign(s)


@pytest.mark.parametrize(
    "layer,input_shape",
    [
        (SpikingConv2D(4, 3, strides=2, padding="valid", lsg_pool=3, gamma=0.4, v_th=0.7, name="c"), (2, 7, 7, 2)),
        (SpikingConv2D(3, 1, weight_standardization=False, lsg_pool=1, name="c1"), (2, 5, 5, 2)),
        (SpikingDense(5, gamma=0.3, v_th=0.5, name="d"), (2, 6)),
        (SpikingDense(4, weight_standardization=False, name="d_raw"), (2, 6)),
    ],
    ids=["conv", "conv_raw", "dense", "dense_raw"],
)
def test_spiking_layer_config_round_trip(layer, input_shape):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(registered) is type(layer) and registered.get_config() == config

    layer.build(input_shape)
    clone.build(input_shape)
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    rng = np.random.default_rng(0)
    layer.kernel.assign(rng.normal(0.3, 1.0, layer.kernel.shape))
    if layer.weight_standardization:
        layer.gain.assign(rng.uniform(1.5, 2.5, layer.gain.shape))
    copy_weights(layer, clone)
    x = tf.constant(rng.random(input_shape), tf.float32)
    state, clone_state = layer.get_initial_state(input_shape[0]), clone.get_initial_state(input_shape[0])
    for _ in range(3):
        spikes, state = layer(x, state)
        clone_spikes, clone_state = clone(x, clone_state)
        np.testing.assert_array_equal(clone_state[0].numpy(), state[0].numpy())
        np.testing.assert_array_equal(clone_spikes.numpy(), spikes.numpy())
    assert 0 < float(tf.reduce_mean(spikes)) < 1


def test_readout_config_round_trip():
    layer = Readout(3, use_bias=False, name="r")
    clone = Readout.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.activation is keras.activations.linear and not clone.use_bias


@pytest.mark.parametrize(
    "rule",
    [
        rules.TESS(alpha_pre=0.5, alpha_post=-1, lambda_pre=0.3, lambda_post=0.4, t_l=2),
        rules.STLLR(alpha_post=0),
        rules.BPTT(),
    ],
    ids=["tess", "stllr", "bptt"],
)
def test_rule_config_round_trip(rule):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rule))
    assert type(clone) is type(rule) and clone.get_config() == rule.get_config()
    assert rules.get(keras.saving.serialize_keras_object(rule)).get_config() == rule.get_config()
    assert type(rules.get(rule.name)) is type(rule)


class BatchRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))


@pytest.mark.parametrize(
    "rule",
    [rules.TESS(alpha_post=-1.0, t_l=1), rules.STLLR(alpha_post=0.0), rules.BPTT()],
    ids=["tess", "stllr", "bptt"],
)
def test_fit_with_tf_data_then_keras_file_round_trip(make_net, tmp_path, rule):
    """A few training steps through model.fit (tf.data + callback), then a
    .keras round trip gives the same predictions, weights and rule."""
    net = make_net("conv", rule=rule, ws=True, seed=9, batch=4, steps=3)
    model = net.model
    initial = [w.numpy().copy() for w in model.trainable_weights]
    # The graph-mode train step is traced for TESS only (seconds per rule on
    # 2 cores); the other rules run the same fit loop eagerly.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=type(rule) is not rules.TESS)
    dataset = tf.data.Dataset.from_tensor_slices((net.x, net.labels)).batch(2)
    recorder = BatchRecorder()
    history = model.fit(dataset, epochs=2, callbacks=[recorder], shuffle=False, verbose=0)
    assert len(recorder.batches) == 4
    assert all(np.isfinite(b["loss"]) and 0 <= b["accuracy"] <= 1 for b in recorder.batches)
    assert len(history.history["loss"]) == 2
    for layer_weights, start in zip(model.trainable_weights, initial):
        assert not np.allclose(layer_weights.numpy(), start), layer_weights.path

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SpikingSequential)
    assert type(loaded.rule) is type(rule) and loaded.rule.get_config() == rule.get_config()
    assert [type(b) for b in loaded.blocks] == [type(b) for b in model.blocks]
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    np.testing.assert_array_equal(loaded(net.x).numpy(), model(net.x).numpy())
    if isinstance(rule, rules.BPTT):  # evaluate once: the test step does not depend on the rule
        evaluation = loaded.evaluate(dataset, return_dict=True, verbose=0)
        assert np.isfinite(evaluation["loss"]) and 0 <= evaluation["accuracy"] <= 1


def test_jit_compiled_train_step_matches_eager(make_net):
    """The TESS train step compiles with XLA and gives the same update as
    the same step run eagerly."""
    weights = {}
    for jit in (False, True):
        net = make_net("conv", rule="tess", ws=True, seed=10, batch=2, steps=3)
        net.model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit, run_eagerly=not jit)
        assert net.model.jit_compile is jit
        initial = [w.numpy().copy() for w in net.model.trainable_weights]
        net.model.fit(net.x, net.labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
        weights[jit] = [w.numpy() for w in net.model.trainable_weights]
    for start, graph, xla in zip(initial, weights[False], weights[True]):
        assert not np.allclose(graph, start)
        np.testing.assert_allclose(xla, graph, rtol=1e-4, atol=1e-5)
