"""BPTT against an independent unrolled TF network; S-TLLR against the
NumPy reference (TESS_SPEC.md §3)."""

import numpy as np
import pytest
import tensorflow as tf

import reference_snn as ref
from conftest import NUM_CLASSES, assert_close, assert_gradients_match, check_meaningful, reference_blocks
from tess_keras.layers import SpikingConv2D, SpikingDense
from tess_keras.rules import BPTT, STLLR


@tf.custom_gradient
def heaviside_with_psi(u):
    """Spike o = [u >= 0.6]; its derivative replaced by 0.3 max(1 - |u - 0.6|, 0)."""

    def grad(upstream):
        return upstream * 0.3 * tf.maximum(1.0 - tf.abs(u - 0.6), 0.0)

    return tf.cast(u >= 0.6, u.dtype), grad


def naive_bptt(model, x, labels):
    """The same network unrolled by hand in float64 TF ops: its own weight
    standardisation, synapses, soft-reset LIF, pooling, readout and loss
    (per-step cross-entropy summed over t and batch), one tape over all T.
    Returns (gradients aligned with model.trainable_variables, loss)."""
    copies = {id(v): tf.Variable(np.asarray(v.numpy(), np.float64)) for v in model.trainable_variables}
    targets = tf.one_hot(labels, NUM_CLASSES, dtype=tf.float64)
    x = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        kernels = {}
        for layer in model.spiking_layers:
            w = copies[id(layer.kernel)]
            if layer.weight_standardization:
                flat = tf.reshape(w, (-1, w.shape[-1]))
                mean = tf.reduce_mean(flat, axis=0)
                var = tf.reduce_mean(tf.square(flat - mean), axis=0)
                w = copies[id(layer.gain)] * (w - mean) / tf.sqrt(var * float(flat.shape[0]) + 1e-4)
            kernels[layer.name] = w
        u = {name: 0.0 for name in kernels}
        o = {name: 0.0 for name in kernels}
        loss = tf.constant(0.0, tf.float64)
        for t in range(x.shape[1]):
            h = x[:, t]
            for layer in model.blocks[:-1]:
                if isinstance(layer, SpikingConv2D):
                    current = tf.nn.conv2d(h, kernels[layer.name], strides=1, padding="SAME")
                elif isinstance(layer, SpikingDense):
                    current = tf.matmul(h, kernels[layer.name])
                elif layer.__class__.__name__ == "MaxPooling2D":
                    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
                    continue
                else:  # Flatten
                    h = tf.reshape(h, (h.shape[0], -1))
                    continue
                u[layer.name] = 0.5 * (u[layer.name] - 0.6 * o[layer.name]) + current
                o[layer.name] = heaviside_with_psi(u[layer.name])
                h = o[layer.name]
            logits = tf.matmul(h, copies[id(model.readout.kernel)]) + copies[id(model.readout.bias)]
            loss += -tf.reduce_sum(targets * tf.nn.log_softmax(logits))
    grads = tape.gradient(loss, [copies[id(v)] for v in model.trainable_variables])
    return [g.numpy() for g in grads], float(loss)


@pytest.mark.parametrize("arch", ["conv", "conv_odd", "dense"])
def test_bptt_matches_naive_unrolled_network(make_net, arch):
    net = make_net(arch, ws=True, seed=6, steps=4)
    model = net.model
    blocks, readout = reference_blocks(model)
    check_meaningful(ref.forward(blocks, readout, net.x.astype(np.float64)))
    grads, ce_sum, _ = BPTT().compute_gradients(model, tf.constant(net.x), tf.constant(net.labels))
    expected, loss = naive_bptt(model, net.x, net.labels)
    assert_close(ce_sum, loss, "loss")
    assert len(grads) == len(expected) == len(model.trainable_variables)
    for variable, grad, want in zip(model.trainable_variables, grads, expected):
        assert np.abs(want).max() > 1e-4, variable.path
        assert_close(grad, want, variable.path)


@pytest.mark.parametrize("arch", ["conv", "conv_odd", "dense"])
@pytest.mark.parametrize("alpha_post,t_l", [(1.0, 0), (-1.0, 1), (0.0, 0)])
def test_stllr_matches_reference(make_net, arch, alpha_post, t_l):
    """m^l[t] = the step-t error back-propagated through the layers above
    (psi for spikes, max-pool routing, previous states constant)."""
    net = make_net(arch, seed=11, steps=4)
    model = net.model
    grads, _, _ = STLLR(alpha_post=alpha_post, t_l=t_l).compute_gradients(
        model, tf.constant(net.x), tf.constant(net.labels)
    )
    blocks, readout = reference_blocks(model)
    rec, layers, (readout_dw, readout_db) = ref.trace_rule(
        blocks, readout, net.x.astype(np.float64), net.labels, alpha_post=alpha_post, t_l=t_l, signal="stllr"
    )
    check_meaningful(rec)
    assert_gradients_match(model, grads, layers, readout_dw, readout_db)


def test_stllr_signal_differs_from_tess(make_net):
    """The two rules share traces but not m: their hidden updates differ."""
    net = make_net("conv", seed=11, steps=4)
    blocks, readout = reference_blocks(net.model)
    x = net.x.astype(np.float64)
    _, tess_layers, _ = ref.trace_rule(blocks, readout, x, net.labels)
    _, stllr_layers, _ = ref.trace_rule(blocks, readout, x, net.labels, signal="stllr")
    for tess_layer, stllr_layer in zip(tess_layers, stllr_layers):
        assert not np.allclose(tess_layer["dW"], stllr_layer["dW"], rtol=0.1)


@pytest.mark.parametrize("arch", ["conv", "dense"])
def test_stllr_post_trace_starts_at_zero(make_net, arch):
    """h[0] = 0 for S-TLLR too: its dW matches the reference with h[0] = 0 and
    not the literal reading h[0] = psi(0) = 0.12 (fails if psi(0) comes back)."""
    net = make_net(arch, seed=11, steps=4)
    grads, _, _ = STLLR(alpha_post=-1.0).compute_gradients(net.model, tf.constant(net.x), tf.constant(net.labels))
    by_id = {id(v): np.asarray(g, np.float64) for v, g in zip(net.model.trainable_variables, grads)}
    blocks, readout = reference_blocks(net.model)
    x = net.x.astype(np.float64)
    _, zero, _ = ref.trace_rule(blocks, readout, x, net.labels, alpha_post=-1.0, signal="stllr", h0="zero")
    _, literal, _ = ref.trace_rule(blocks, readout, x, net.labels, alpha_post=-1.0, signal="stllr", h0="psi")
    for layer, want, wrong in zip(net.model.spiking_layers, zero, literal):
        got = by_id[id(layer.kernel)]
        assert_close(got, want["dW"], f"dW {layer.name}")
        assert np.abs(wrong["dW"] - want["dW"]).max() > 0.02 * np.abs(want["dW"]).max()
        assert np.abs(got - wrong["dW"]).max() > 100 * (1e-7 + 1e-5 * np.abs(wrong["dW"]).max())
