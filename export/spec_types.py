"""The exported network's integer description: the whole ``EngineSpec`` (built by
``tess_keras.export.spec.build_spec``, read by the golden model, the code generator and
the memory budget) and, re-exported from their kinds' modules in ``export/layers/``,
the layer specs. Number formats: see ``spec``."""

import dataclasses

import numpy as np

from tess_keras.export.layers.fixed_point import GRAD_SHIFT  # noqa: F401  (re-exported)
from tess_keras.export.layers.flatten import FlattenSpec  # noqa: F401  (re-exported)
from tess_keras.export.layers.maxpool import PoolSpec  # noqa: F401  (re-exported)
from tess_keras.export.layers.readout import ReadoutSpec  # noqa: F401  (re-exported)
from tess_keras.export.layers.spiking import SpikingSpec


@dataclasses.dataclass
class EngineSpec:
    """The whole exported network."""

    input_shape: tuple
    input_scale: float
    time_steps: int
    num_classes: int
    layers: list
    learning_rate: float
    seed: int = 0x7E55
    t_l: int = 0
    lsg_source: str = "block"  # the training rule's: "block" (after a following max-pool) or "layer"

    @property
    def input_size(self):
        return int(np.prod(self.input_shape))

    @property
    def spiking(self):
        return [layer for layer in self.layers if isinstance(layer, SpikingSpec)]

    @property
    def readout(self):
        return self.layers[-1]

    @property
    def learnable(self):
        return [layer for layer in self.layers if getattr(layer, "learn", False)]  # only kinds with weights learn

    def quantize_input(self, x):
        """Float input(s) -> int8 with this model's input scale."""
        return np.clip(np.round(np.asarray(x, np.float64) / self.input_scale), -127, 127).astype(np.int8)
