"""The LSG's source (TESS_SPEC.md §2): the block output after a max-pool
(``lsg_source="block"``, default) or the layer's own spikes (``"layer"``).

Checks the max-pool routing the block LSG uses (value = the max-pool's,
gradient to the first maximum of each window in row-major order, the tie
rule the golden model and the C++ engine share), that TensorFlow's own
MaxPool gradient makes the same choice on the CPU, the option's
serialisation, and that the two sources give different updates exactly
where a max-pool follows a layer.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_snn as ref
from tess_keras import rules
from tess_keras.rules import TESS
from tess_keras.rules.lsg import first_max_pool, following_pools

GEOMETRIES = [
    dict(pool_size=2, strides=2, padding="valid"),
    dict(pool_size=2, strides=1, padding="same"),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=2, strides=2, padding="same"),
    dict(pool_size=3, strides=1, padding="valid"),
]


def spike_maps(seed, shape=(2, 7, 7, 3), rate=0.3):
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float32)


def routed(pool_fn, x, seed):
    """Gradient of sum(g * pool(x)) w.r.t. x for a random g."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = pool_fn(x)
    g = tf.constant(np.random.default_rng(seed).normal(size=out.shape).astype(np.float32))
    return out.numpy(), tape.gradient(out, x, output_gradients=g).numpy(), g.numpy()


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g['pool_size']}-{g['strides']}-{g['padding']}")
@pytest.mark.parametrize("kind", ["spikes", "analog"])
def test_first_max_pool_value_is_the_max_pool(geometry, kind):
    pool = keras.layers.MaxPooling2D(**geometry)
    x = spike_maps(1) if kind == "spikes" else np.random.default_rng(1).normal(size=(2, 7, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(first_max_pool(tf.constant(x), pool).numpy(), pool(x).numpy())


def test_gradient_goes_to_the_first_maximum_in_row_major_order():
    pool = keras.layers.MaxPooling2D(2)
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0:2, 0:2, 0] = [[0, 1], [1, 1]]  # ties: first is (0, 1)
    x[0, 0:2, 2:4, 0] = [[0, 0], [0, 1]]  # a single spike at (1, 3)
    x[0, 2:4, 0:2, 0] = [[1, 1], [1, 1]]  # all tied: (2, 0)
    # window (1, 1) has no spike: all tied at 0, first is (2, 2)
    _, grad, g = routed(lambda v: first_max_pool(v, pool), x, seed=0)
    expected = np.zeros_like(x)
    for (i, j), (y, xx) in {(0, 0): (0, 1), (0, 1): (1, 3), (1, 0): (2, 0), (1, 1): (2, 2)}.items():
        expected[0, y, xx, 0] = g[0, i, j, 0]
    np.testing.assert_array_equal(grad, expected)
    # The NumPy reference routes the same way.
    np.testing.assert_allclose(ref.max_pool_backward(x.astype(np.float64), g.astype(np.float64)), expected)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g['pool_size']}-{g['strides']}-{g['padding']}")
def test_tensorflow_maxpool_gradient_breaks_ties_the_same_way_on_cpu(geometry):
    """TF's CPU MaxPoolGrad also sends a window's gradient to its first maximum
    (row-major, padding excluded), so BPTT/S-TLLR through Keras pools and the
    block LSG agree. The LSG does not rely on it: other kernels (GPU) may differ."""
    pool = keras.layers.MaxPooling2D(**geometry)
    x = spike_maps(2, rate=0.5)
    with tf.device("/CPU:0"):
        value, tf_grad, _ = routed(
            lambda v: tf.nn.max_pool2d(v, geometry["pool_size"], geometry["strides"], geometry["padding"].upper()), x, 3
        )
        ours_value, ours_grad, _ = routed(lambda v: first_max_pool(v, pool), x, 3)
    np.testing.assert_array_equal(ours_value, value)
    np.testing.assert_array_equal(ours_grad, tf_grad)
    assert np.count_nonzero(tf_grad) > 0


def test_lsg_source_is_an_option_that_serialises(tmp_path):
    assert TESS().lsg_source == "block"
    rule = TESS(alpha_post=0.0, lsg_source="layer")
    assert rule.get_config()["lsg_source"] == "layer"
    assert TESS.from_config(rule.get_config()).lsg_source == "layer"
    assert rules.get("tess", lsg_source="layer").lsg_source == "layer"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rule))
    assert isinstance(restored, TESS) and restored.lsg_source == "layer"
    with pytest.raises(ValueError, match="lsg_source must be 'block'.*or 'layer'"):
        TESS(lsg_source="pool")

    from conftest import build_net

    net = build_net("conv", rule=TESS(lsg_source="layer"))
    path = tmp_path / "m.keras"
    net.model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.rule.lsg_source == "layer" and loaded.rule.alpha_post == 1.0


def test_following_pools_finds_the_block_pool(make_net):
    conv = make_net("conv").model  # conv_a -> MaxPooling2D -> Flatten -> dense_b
    pools = following_pools(conv)
    assert isinstance(pools[0], keras.layers.MaxPooling2D) and pools[1] is None
    assert following_pools(make_net("dense").model) == [None, None]
    odd = following_pools(make_net("conv_odd").model)  # conv_a -> conv_b -> pool
    assert odd[0] is None and isinstance(odd[1], keras.layers.MaxPooling2D)


@pytest.mark.parametrize("arch", ["conv", "conv_odd", "dense"])
def test_block_and_layer_sources_differ_only_where_a_pool_follows(make_net, arch):
    net = make_net(arch, seed=2, steps=4)
    x, y = tf.constant(net.x), tf.constant(net.labels)
    block, _, _ = TESS(lsg_source="block").compute_gradients(net.model, x, y)
    layer, _, _ = TESS(lsg_source="layer").compute_gradients(net.model, x, y)
    by_id = {id(v): (b.numpy(), g.numpy()) for v, b, g in zip(net.model.trainable_variables, block, layer)}
    for spiking, pool in zip(net.model.spiking_layers, following_pools(net.model)):
        b, g = by_id[id(spiking.kernel)]
        assert np.abs(b).max() > 1e-4
        if pool is None:
            np.testing.assert_array_equal(b, g)
        else:
            cosine = float((b * g).sum() / np.linalg.norm(b) / np.linalg.norm(g))
            assert cosine < 0.999, f"{spiking.name}: block and layer LSG give the same update (cos {cosine:.4f})"


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[1]], ids=["tiled", "padded"])
def test_block_learning_signal_compiles_with_xla(geometry):
    """``tess train --jit``: the routing must be XLA-compilable and give the same signal."""
    from tess_keras.layers import SpikingConv2D
    from tess_keras.rules.lsg import local_learning_signal, square_wave_basis

    layer = SpikingConv2D(3, 3, lsg_pool=2)
    layer.build((None, 8, 8, 2))
    pool = keras.layers.MaxPooling2D(**geometry)
    spikes = tf.constant(spike_maps(4, shape=(2, 8, 8, 3), rate=0.5))
    targets = tf.one_hot([1, 3], 4)
    basis = tf.constant(square_wave_basis(4, layer.lsg_size))

    def signal():
        return local_learning_signal(layer, spikes, basis, targets, pool=pool)

    eager = signal().numpy()
    compiled = tf.function(signal, jit_compile=True)().numpy()
    assert np.abs(eager).max() > 0
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-8)


def test_training_config_sets_the_rules_lsg_source():
    """`tess train --lsg-source` -> TrainConfig.lsg_source -> the rule (and from there the export)."""
    from tess_keras.training import ConfigError, resolve_config
    from tess_keras.training.loop import make_rule

    assert resolve_config({}).lsg_source == "block"
    config = resolve_config({"lsg_source": "layer", "alpha_post": 0.0})
    rule = make_rule(config.rule, config.alpha_post, config.lsg_source)
    assert isinstance(rule, TESS) and rule.lsg_source == "layer" and rule.alpha_post == 0.0
    with pytest.raises(ConfigError, match="--lsg-source must be block .* or layer, got 'pool'"):
        resolve_config({"lsg_source": "pool"})
