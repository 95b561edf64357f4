"""Python golden model of the generated C++ engine's integer arithmetic.

Every operation here is the integer operation the engine performs, in the
same order where order matters (saturation, rounding, the random stream),
so the host build of the generated code must match it bit for bit. Arrays
carry a leading batch axis for fast evaluation; learning needs batch 1
(one on-device SGD step per sample). Each layer kind's step lives in its
module of ``export/layers/``; ``GoldenEngine`` holds the state and runs them.
"""

import numpy as np

from tess_keras.export import layers as layer_kinds
from tess_keras.export.layers.fixed_point import (  # noqa: F401  (re-exported: the runtime's primitives)
    EXP2_LUT,
    FNV_OFFSET,
    FNV_PRIME,
    GOLDEN_RATIO_32,
    INT32_MAX,
    INT32_MIN,
    LOG2E_Q12,
    MASK32,
    fnv1a,
    psi_q15,
    random_stream,
    rescale,
    round_shift,
    sat16,
    sat32,
    softmax_error,
    stochastic_round_update,
)


class GoldenEngine:
    """Integer model of the generated engine (same C API, numpy inside).

    The state, by layer name, is filled by the layer kinds: ``weights`` (int8 values
    as int64), membranes ``u``, spikes ``o``, traces ``q`` and ``h`` (spiking layers),
    update accumulators ``grads``; the readout's ``bias``, ``bias_grad``, ``logits``
    and ``logit_sum``; ``counter`` is the position in the random stream.

    Args:
        spec: an ``EngineSpec`` from ``build_spec``.
        batch: samples run side by side (learning needs 1).
        rounding: ``"stochastic"`` (the engine's) or ``"nearest"`` (for the
            measurement of what stochastic rounding buys).
    """

    def __init__(self, spec, batch=1, rounding="stochastic"):
        self.spec = spec
        self.batch = batch
        self.rounding = rounding
        self.plan = [(layer_kinds.for_spec(layer), layer) for layer in spec.layers]  # (kind, spec) in order
        self.layers_by_name = {layer.name: layer for layer in spec.layers}
        self.weights = {}
        for kind, layer in self.plan:
            kind.golden_init(self, layer)
        self.counter = 0
        self._zero_grads()
        self.reset()

    # -- state -------------------------------------------------------------------
    def _zero_grads(self):
        self.grads = {}
        for kind, layer in self.plan:
            kind.golden_zero_grads(self, layer)

    def reset(self):
        """Zero membranes, spikes, traces and the logit sum (``tess_reset``)."""
        self.u, self.o, self.q, self.h = {}, {}, {}, {}
        for kind, layer in self.plan:
            kind.golden_reset(self, layer)
        self.t = 0

    def draw(self, count):
        """The next ``count`` draws of the random stream (``tess_random``)."""
        random = random_stream(self.spec.seed, self.counter, count)
        self.counter += count
        return random

    def draw_pairs(self, count):
        """Rounding draws of ``count`` weights, two per draw (``tess_sgd_update``): weight i
        takes the 16-bit half i % 2 (low, high) of draw i // 2."""
        random = self.draw((count + 1) // 2)
        return np.stack([random & 0xFFFF, random >> 16], axis=1).ravel()[:count]

    # -- one time step -------------------------------------------------------------
    def step(self, x, labels=None):
        """One time step (``tess_step``). ``x``: int8 [batch, *input_shape];
        ``labels``: int [batch] (>= 0 accumulates TESS updates) or None."""
        x = np.asarray(x, np.int64).reshape((self.batch,) + tuple(self.spec.input_shape))
        learning = labels is not None and bool(np.all((np.asarray(labels) >= 0) & (np.asarray(labels) < self.spec.num_classes)))
        if learning:
            if self.batch != 1:
                raise ValueError("learning runs one sample at a time (batch=1)")
            labels = np.asarray(labels, np.int64).reshape(1)
        for kind, layer in self.plan:
            x = kind.golden_step(self, layer, x, labels if learning else None)
        self.t += 1

    # -- on-device SGD -------------------------------------------------------------------
    def apply_update(self):
        """One SGD step from the accumulated updates, then clear them (``tess_apply_update``)."""
        for layer in self.spec.learnable:
            layer_kinds.for_spec(layer).golden_update(self, layer)
        self._zero_grads()

    # -- results -------------------------------------------------------------------
    def predict(self):
        """argmax of the logits summed since reset (first maximum wins)."""
        return np.argmax(self.logit_sum, axis=-1)

    def state_hash(self):
        """FNV-1a over every learnable weight (int8 bytes; readout bias as int32 LE)."""
        state = FNV_OFFSET
        for kind, layer in self.plan:
            state = fnv1a(kind.learned_bytes(self, layer), state)
        return state

    def _buffers(self, method):
        out = {}
        for kind, layer in self.plan:
            out.update(getattr(kind, method)(self, layer))
        return out

    def step_buffers(self):
        """What the engine exposes after each step (batch 1), name -> array in C type."""
        return self._buffers("step_buffers")

    def grad_buffers(self):
        return self._buffers("grad_buffers")

    def weight_buffers(self):
        return self._buffers("weight_buffers")


def run_samples(engine, inputs, labels=None, learn=False, frames=False):
    """Run whole samples: reset, T steps, (apply_update). Returns predictions.

    Args:
        engine: a ``GoldenEngine`` (batch 1 if ``learn``).
        inputs: int8 ``[N, *input_shape]`` (direct) or ``[N, T, *input_shape]`` (frames).
        labels: int ``[N]``, required when ``learn``.
        learn: accumulate TESS updates and apply one SGD step per sample.
        frames: inputs carry one frame per time step.
    """
    inputs = np.asarray(inputs)
    steps = engine.spec.time_steps
    predictions = []
    for start in range(0, len(inputs), engine.batch):
        chunk = inputs[start : start + engine.batch]
        count = len(chunk)
        if count < engine.batch:
            chunk = np.concatenate([chunk, np.zeros((engine.batch - count,) + chunk.shape[1:], chunk.dtype)])
        engine.reset()
        label = labels[start : start + 1] if learn else None
        for t in range(steps):
            engine.step(chunk[:, t % chunk.shape[1]] if frames else chunk, label)
        if learn:
            engine.apply_update()
        predictions.append(engine.predict()[:count])
    return np.concatenate(predictions)
