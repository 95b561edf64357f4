"""The soft-reset LIF neuron and its surrogate derivative (TESS_SPEC.md §1)."""

import numpy as np
import pytest
import tensorflow as tf

import reference_snn as ref
from tess_keras import neurons
from tess_keras.layers import SpikingDense


def test_spec_constants():
    assert neurons.GAMMA == 0.5
    assert neurons.V_TH == 0.6


@pytest.mark.parametrize(
    "u,expected",
    # psi(u) = 0.3 max(1 - |u - 0.6|, 0), worked out by hand.
    [(-0.5, 0.0), (-0.4, 0.0), (0.0, 0.12), (0.1, 0.15), (0.6, 0.3), (1.1, 0.15), (1.5, 0.03), (1.6, 0.0), (3.0, 0.0)],
)
def test_surrogate_values(u, expected):
    assert float(neurons.surrogate(tf.constant(u))) == pytest.approx(expected, abs=1e-6)


def test_surrogate_matches_reference_on_a_grid():
    u = np.linspace(-2.0, 3.0, 101)
    np.testing.assert_allclose(neurons.surrogate(tf.constant(u, tf.float32)).numpy(), ref.psi(u), atol=1e-6)


def test_spike_is_heaviside_at_threshold():
    u = tf.constant([-1.0, 0.0, 0.5999, 0.6, 0.6001, 2.0])
    np.testing.assert_array_equal(neurons.spike(u).numpy(), [0, 0, 0, 1, 1, 1])


def test_spike_gradient_is_psi():
    rng = np.random.default_rng(0)
    u = tf.constant(rng.uniform(-1.0, 2.5, (4, 6)), tf.float32)
    upstream = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(u)
        out = neurons.spike(u)
    grad = tape.gradient(out, u, output_gradients=upstream).numpy()
    np.testing.assert_allclose(grad, upstream.numpy() * ref.psi(u.numpy().astype(np.float64)), rtol=1e-6, atol=1e-7)
    assert (grad != 0).mean() > 0.3


def test_soft_reset_by_threshold():
    # Constant input 1.0: u = 1.0 (spike), then 0.5 (1.0 - 0.6) + 1 = 1.2, then
    # 0.5 (1.2 - 0.6) + 1 = 1.3, 1.35. A reset by 1.0 or to zero would give 1.0.
    u, o = tf.zeros(1), tf.zeros(1)
    trajectory = []
    for _ in range(4):
        u, o = neurons.lif_step(u, o, tf.ones(1))
        trajectory.append((float(u[0]), float(o[0])))
    np.testing.assert_allclose(trajectory, [(1.0, 1), (1.2, 1), (1.3, 1), (1.35, 1)], atol=1e-6)


def test_lif_matches_reference_over_time():
    rng = np.random.default_rng(1)
    currents = rng.normal(0.3, 0.6, (8, 5, 7))
    u, o = tf.zeros((5, 7)), tf.zeros((5, 7))
    u_ref, o_ref = np.zeros((5, 7)), np.zeros((5, 7))
    spikes = 0.0
    for current in currents:
        u, o = neurons.lif_step(u, o, tf.constant(current, tf.float32))
        u_ref = ref.GAMMA * (u_ref - ref.V_TH * o_ref) + current
        o_ref = (u_ref >= ref.V_TH).astype(np.float64)
        assert np.abs(u_ref - ref.V_TH).min() > 1e-5
        np.testing.assert_allclose(u.numpy(), u_ref, atol=1e-5)
        np.testing.assert_array_equal(o.numpy(), o_ref)
        spikes += o_ref.mean()
    assert 0.1 < spikes / len(currents) < 0.9


def test_layer_call_is_one_lif_step():
    layer = SpikingDense(6, weight_standardization=False)
    layer.build((None, 4))
    assert layer.state_shape == (6,)
    rng = np.random.default_rng(2)
    layer.kernel.assign(rng.normal(0.2, 0.5, (4, 6)))
    state = layer.get_initial_state(3)
    np.testing.assert_array_equal(state[0].numpy(), np.zeros((3, 6)))
    u_ref, o_ref = np.zeros((3, 6)), np.zeros((3, 6))
    for _ in range(3):
        x = rng.random((3, 4))
        o, state = layer(tf.constant(x, tf.float32), state)
        u_ref = ref.GAMMA * (u_ref - ref.V_TH * o_ref) + x @ layer.kernel.numpy().astype(np.float64)
        o_ref = (u_ref >= ref.V_TH).astype(np.float64)
        np.testing.assert_allclose(state[0].numpy(), u_ref, atol=1e-5)
        np.testing.assert_array_equal(o.numpy(), o_ref)
        np.testing.assert_array_equal(state[1].numpy(), o_ref)
