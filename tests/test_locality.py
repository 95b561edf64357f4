"""Spatial locality: a hidden layer's TESS update depends on nothing above it;
S-TLLR's does (it back-propagates the error), which shows the test can fail."""

import numpy as np
import pytest
import tensorflow as tf

from tess_keras.rules import STLLR, TESS


def hidden_updates(net, rule):
    """{variable path: gradient} of every spiking layer's variables."""
    grads, _, _ = rule.compute_gradients(net.model, tf.constant(net.x), tf.constant(net.labels))
    by_id = {id(v): g.numpy() for v, g in zip(net.model.trainable_variables, grads)}
    return {
        layer.name: [by_id[id(v)] for v in layer.trainable_variables] for layer in net.model.spiking_layers
    }


def perturb(variables, seed):
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(variable.numpy() * rng.uniform(0.5, 1.5, variable.shape) + rng.normal(0, 0.2, variable.shape))


@pytest.mark.parametrize("arch", ["conv", "dense"])
@pytest.mark.parametrize("lsg_source", ["block", "layer"])
def test_tess_hidden_update_ignores_layers_above(make_net, arch, lsg_source):
    # "conv" is conv -> max-pool -> dense: with lsg_source="block" the first
    # layer's LSG reads the pool's output, still nothing above its block.
    net = make_net(arch, ws=True, seed=8, steps=4)
    first, second = net.model.spiking_layers
    readout = net.model.readout
    rule = TESS(lsg_source=lsg_source)
    before = hidden_updates(net, rule)

    perturb(readout.trainable_variables, seed=1)
    after_readout = hidden_updates(net, rule)
    perturb(second.trainable_variables, seed=2)
    after_second = hidden_updates(net, rule)

    # The first layer sees neither change, the second not the readout's (the
    # tolerance only forgives float reordering; a dependence moves them by %).
    for before_grad, after_grad in zip(before[first.name], after_second[first.name]):
        assert np.abs(before_grad).max() > 1e-5
        np.testing.assert_allclose(after_grad, before_grad, rtol=1e-6, atol=1e-9)
    for before_grad, after_grad in zip(before[second.name], after_readout[second.name]):
        np.testing.assert_allclose(after_grad, before_grad, rtol=1e-6, atol=1e-9)
    # ...while the second layer's own weights do change its update.
    assert not np.allclose(after_second[second.name][0], before[second.name][0])


def test_stllr_hidden_update_depends_on_layers_above(make_net):
    net = make_net("conv", ws=True, seed=8, steps=4)
    first, second = net.model.spiking_layers
    before = hidden_updates(net, STLLR())
    perturb(net.model.readout.trainable_variables, seed=1)
    after_readout = hidden_updates(net, STLLR())
    perturb(second.trainable_variables, seed=2)
    after_second = hidden_updates(net, STLLR())
    assert not np.allclose(after_readout[second.name][0], before[second.name][0], rtol=1e-3)
    assert not np.allclose(after_readout[first.name][0], before[first.name][0], rtol=1e-3)
    assert not np.allclose(after_second[first.name][0], after_readout[first.name][0], rtol=1e-3)
