"""Spiking models: the generic ``SpikingSequential`` and the recipes' networks."""

from tess_keras.models.mcu_net import mcu_net
from tess_keras.models.spiking_sequential import SpikingSequential, StepRecord
from tess_keras.models.vgg9 import VGG9_BLOCKS, vgg9

MODELS = {"vgg9": vgg9, "mcu": mcu_net}


def build_model(name, input_shape, num_classes, rule="tess"):
    """Build a named model (``vgg9`` or ``mcu``)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[name](input_shape, num_classes, rule=rule)


__all__ = ["SpikingSequential", "StepRecord", "vgg9", "mcu_net", "VGG9_BLOCKS", "MODELS", "build_model"]
