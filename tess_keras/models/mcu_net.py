"""A small spiking CNN sized for a Cortex-M4 with on-device learning."""

import keras

from tess_keras.layers import Readout, SpikingConv2D
from tess_keras.models.spiking_sequential import SpikingSequential


def mcu_net(input_shape, num_classes, rule="tess", channels=(16, 32, 64), name="mcu_net"):
    """Three spiking 3×3 conv blocks, each followed by a 2×2 max-pool while the
    feature map is wider than 4, then flatten and a linear readout.

    Sizes: 32×32×2 input, 10 classes: 33,418 parameters (conv 23,328 +
    readout 10,250), 21.5k neurons; 8×8×1 (digits): 33,418 parameters.
    Everything fits a Cortex-M4's 128 KB RAM as int8 weights with int16
    state (see ``tess export``).

    Args:
        input_shape: per-step input ``(H, W, C)``.
        num_classes: classes of the readout.
        rule: learning rule (name or ``tess_keras.rules`` object).
        channels: filters of each conv block.
    """
    height = int(input_shape[0])
    layers = []
    for index, filters in enumerate(channels, start=1):
        layers.append(SpikingConv2D(filters, 3, lsg_pool=2, name=f"conv{index}"))
        if height > 4:
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool{index}"))
            height //= 2
    layers += [keras.layers.Flatten(name="flatten"), Readout(num_classes, name="readout")]
    model = SpikingSequential(layers, rule=rule, name=name)
    model.build((None, None) + tuple(input_shape))
    return model
