"""VGG-9 exactly as in the paper (TESS_SPEC.md §4)."""

import keras

from tess_keras.layers import Readout, SpikingConv2D
from tess_keras.models.spiking_sequential import SpikingSequential

# (filters, max-pool after, LSG pool side k) per block, spec §4.
VGG9_BLOCKS = (
    (64, False, 4),
    (128, True, 2),
    (256, False, 2),
    (256, True, 2),
    (512, False, 2),
    (512, True, 2),
    (512, False, 2),
    (512, False, 1),
)


def vgg9(input_shape, num_classes, rule="tess", width=1.0, name="vgg9"):
    """VGG-9 spiking network: 3×3 convs without bias or batch norm, soft-reset
    LIF after each, weight standardisation with learnable gain, max-pool 2
    after blocks 2, 4 and 6, global average pool, linear readout.

    Args:
        input_shape: per-step input ``(H, W, C)``, e.g. ``(48, 48, 2)``.
        num_classes: classes of the readout.
        rule: learning rule (name or ``tess_keras.rules`` object).
        width: channel multiplier (1.0 = the paper's network).

    Returns:
        A built ``SpikingSequential`` taking ``[batch, T, H, W, C]``.
    """
    layers = []
    for index, (filters, pool, lsg_pool) in enumerate(VGG9_BLOCKS, start=1):
        layers.append(SpikingConv2D(max(1, int(filters * width)), 3, lsg_pool=lsg_pool, name=f"conv{index}"))
        if pool:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{index}"))
    layers += [keras.layers.GlobalAveragePooling2D(name="gap"), Readout(num_classes, name="readout")]
    model = SpikingSequential(layers, rule=rule, name=name)
    model.build((None, None) + tuple(input_shape))
    return model
