"""The exported network's integer description: one dataclass per layer kind and the
whole ``EngineSpec`` (built by ``tess_keras.export.spec.build_spec``, read by the golden
model, the code generator and the memory budget). Number formats: see ``spec``."""

import dataclasses

import numpy as np

GRAD_SHIFT = 5  # (Q15 error x Q-F trace) >> 5 into the int32 accumulator


@dataclasses.dataclass
class SpikingSpec:
    """One LIF layer (conv or dense) in integer form."""

    name: str
    kind: str  # "conv" or "dense"
    in_shape: tuple  # (H, W, C) for conv, (N,) for dense
    out_shape: tuple
    weights: np.ndarray  # int8, [K, K, Cin, Cout] or [N, Cout]
    weight_scale: np.ndarray  # float per output channel
    analog_input: bool  # the first layer sees int8 input, the others binary spikes
    current_mult: np.ndarray  # per output channel: int32 acc -> Q11 current
    current_shift: np.ndarray
    threshold: int  # Q11
    gamma: int  # Q15
    psi_scale: int  # Q15
    kernel_size: int = 1
    reset_amount: int = None  # Q11 r of u = gamma (u - r o) + I (None: the threshold, the spec's reset)
    stride: int = 1
    pad: tuple = (0, 0)  # (top, left)
    learn: bool = False
    # TESS (only used when learn)
    lambda_pre: int = 0  # Q15
    lambda_post: int = 0  # Q15
    alpha_pre: int = 1
    alpha_post: int = 1
    trace_frac: int = 13
    grad_shift: int = GRAD_SHIFT
    lsg_pool: int = 1
    lsg_from: str = None  # name of the PoolSpec whose output the LSG reads (lsg_source "block"); None: own spikes
    lsg_shape: tuple = None  # shape of the spike map the LSG pools (out_shape, or the pool's out_shape)
    lsg_rows: tuple = ((0, 1),)  # adaptive-pool windows [start, end) along the LSG map's rows (conv)
    lsg_cols: tuple = ((0, 1),)  # ... and columns; PyTorch's adaptive_avg_pool, so they may overlap
    lsg_norm: int = 1  # L: the least common multiple of the cells' areas
    lsg_weight: np.ndarray = None  # int [k, k]: L / area of each cell (all 1 for equal cells)
    lsg_size: int = 1  # n
    lsg_sign: np.ndarray = None  # int8 [C, n] in {-1, 0, 1}
    lsg_mult: int = 0  # Z (integer) -> Q12 logits: 4096 / (n * L)
    lsg_shift: int = 1
    update_mult: np.ndarray = None  # per output channel: acc -> Q16 weight LSB (includes lr)
    update_shift: np.ndarray = None

    @property
    def num_neurons(self):
        return int(np.prod(self.out_shape))

    @property
    def num_inputs(self):
        return int(np.prod(self.in_shape))

    @property
    def out_channels(self):
        return int(self.out_shape[-1])



@dataclasses.dataclass
class PoolSpec:
    """MaxPooling2D on binary spike maps (a logical OR over the window)."""

    name: str
    in_shape: tuple
    out_shape: tuple
    pool: tuple
    stride: tuple
    pad: tuple  # (top, left)


@dataclasses.dataclass
class FlattenSpec:
    """Flatten: a no-op on the engine's channels-last layout (Keras order)."""

    name: str
    in_shape: tuple
    out_shape: tuple


@dataclasses.dataclass
class ReadoutSpec:
    """The linear readout on binary spikes: per-step int32 logits."""

    name: str
    in_size: int
    num_classes: int
    weights: np.ndarray  # int8 [in, C]
    bias: np.ndarray  # int32 [C], units of weight_scale
    weight_scale: float
    logit_mult: int  # int32 logits -> Q12
    logit_shift: int
    learn: bool = False
    update_mult: int = 0  # Q15 error sums -> Q16 weight LSB (includes lr)
    update_shift: int = 1


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
        return [layer for layer in self.layers if isinstance(layer, (SpikingSpec, ReadoutSpec)) and layer.learn]

    def quantize_input(self, x):
        """Float input(s) -> int8 with this model's input scale."""
        return np.clip(np.round(np.asarray(x, np.float64) / self.input_scale), -127, 127).astype(np.int8)
