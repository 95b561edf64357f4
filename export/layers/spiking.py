"""What the two LIF layer kinds (conv and dense) share: the spec, the lowering, the
membrane and TESS learning in the golden model, the memory row and the float step.

``conv`` and ``dense`` subclass ``SpikingKind`` with their geometry: the output shape
and LSG cells, the input columns of one output (``columns``), the learning signal and
the float current. Its part of the generated engine is ``spiking_engine.SpikingEngine``.
"""

import abc
import dataclasses
import math

import numpy as np

from tess_keras.export.layers import maxpool
from tess_keras.export.layers.base import BudgetRow, ExportError, LayerKind
from tess_keras.export.layers.fixed_point import (
    GRAD_SHIFT,
    LOGIT_FRAC,
    Q15,
    U_FRAC,
    UPDATE_FRAC,
    WEIGHT_MAX,
    exact,
    psi_q15,
    quantize_multiplier,
    quantize_multipliers,
    quantize_multipliers16,
    rescale,
    round_shift,
    sat16,
    stochastic_round_update,
    to_q,
)
from tess_keras.export.layers.spiking_engine import SpikingEngine

SPIKE_GAIN = 1000.0  # the float step graph's spike: relu6(K (u - v_th)) / 6


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
    grad_shift: int = GRAD_SHIFT  # per-step dW sums -> int16 accumulators: sat16(round(sum / 2**grad_shift))
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


def adaptive_windows(size, k):
    """PyTorch's adaptive_avg_pool windows along one axis: ``[floor(i*size/k), ceil((i+1)*size/k))``
    for i < k (as ``tess_keras.layers.base.adaptive_pool_matrix``); neighbours overlap when k does
    not divide size."""
    return tuple((i * size // k, -(-(i + 1) * size // k)) for i in range(k))


def _quantize_weights_per_channel(kernel):
    """Symmetric int8 per output channel (last axis)."""
    flat = kernel.reshape(-1, kernel.shape[-1])
    scale = np.abs(flat).max(axis=0) / WEIGHT_MAX
    scale = np.where(scale > 0, scale, 1e-8)
    q = np.clip(np.round(kernel / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, scale.astype(np.float64)


def _trace_frac(max_input, lambda_pre_q15):
    """Fraction bits F of the int16 pre trace so that its largest value fits."""
    lam = lambda_pre_q15 / 32768.0
    largest = max_input / (1.0 - lam) + 1.0
    frac = int(math.floor(math.log2(32767.0 / largest)))
    return max(0, min(frac, 14))


def _e_limit(positions):
    """The largest |e_pre|, |e_post| for which a weight row's step sum over ``positions``
    (each |e_pre q + e_post x 2**F| <= 2 * 32767 |e|) and the rounding stay below 2**31, so the
    fast path sums in int32 (SMLAD)."""
    return min(32767, (2**31 - 1 - 2 ** (GRAD_SHIFT - 1)) // (positions * 2 * 32767))


def _psi_shift(spec, following, positions):
    """Bits the surrogate's scale gives up so that e_pre = g psi and e_post = g h (Q15) stay within
    int16 always, and within ``_e_limit`` (the fast path's int32 sums) for equal, disjoint LSG cells:
    |g| <= 2**16 (softmax error) times the largest L / area, the LSG cells a position lies in and
    the pool windows it can win (lsg_source "block"), psi <= psi_scale, h <= psi_scale / (1 - lambda).
    Adaptive cells multiply the worst case, rarely the values: there the step's own bound decides
    between the int32 and the int64 sums (tess_dw_fast.cc), and psi keeps its precision."""
    def most(windows, size):
        return max(sum(a <= i < b for a, b in windows) for i in range(size))

    spatial = len(spec.lsg_shape) == 3
    cells = most(spec.lsg_rows, spec.lsg_shape[0]) * most(spec.lsg_cols, spec.lsg_shape[1]) if spatial else 1
    wins = 1
    if spec.lsg_from:
        (ph, pw), (sh, sw) = following.pool_size, following.strides
        wins = math.ceil(ph / sh) * math.ceil(pw / sw)
    factor = int(np.max(spec.lsg_weight)) * cells * wins
    h = min(32767.0, spec.psi_scale / (1.0 - spec.lambda_post / 32768.0)) if spec.alpha_post else 0.0
    e = 2.0**16 * max(abs(spec.alpha_pre) * spec.psi_scale, abs(spec.alpha_post) * h) / 32768.0
    return max(0, math.ceil(math.log2(e * factor / 32767.0)), math.ceil(math.log2(e / _e_limit(positions))))


def _multipliers(channels):
    return channels * 5  # int32 mult + int8 shift


class SpikingKind(SpikingEngine, LayerKind):
    """A LIF layer with weights: u = gamma (u - r o) + I, o = u >= v_th, learning by TESS."""

    spec_type = SpikingSpec
    has_weights = True
    emits_spikes = True

    # -- what conv and dense define ---------------------------------------------------
    @abc.abstractmethod
    def geometry(self, block, ctx):
        """``(out_shape, fields, lsg_pool, cells, lsg_from, lsg_shape)`` of ``block``: ``fields``
        are the spec's geometry fields (``kind``...), ``cells`` the LSG's (row, column) windows.

        Raises:
            ExportError: when the incoming tensor does not fit the layer.
        """

    @abc.abstractmethod
    def columns(self, layer, x):
        """[batch, ..., rows] float64: for every output position, the inputs its weight rows multiply."""

    @abc.abstractmethod
    def learning_signal(self, engine, layer, spikes, labels):
        """g per position of the map ``spikes`` (of shape ``layer.lsg_shape``)."""

    @abc.abstractmethod
    def tflm_current(self, block, kernel, h):
        """The float input current of ``block`` on ``h``."""

    @abc.abstractmethod
    def geometry_text(self, layer):
        """The layer's geometry in ``describe``'s line."""

    # -- lowering ---------------------------------------------------------------------
    def lower(self, block, ctx):
        import keras

        from tess_keras import neurons
        from tess_keras.rules.lsg import square_wave_basis

        kind = type(block).__name__
        if not ctx.spikes and not ctx.first:
            raise ExportError(f"layer {block.name} ({kind}) follows a non-spiking layer on analog values; "
                              "the engine supports analog input only into the first layer.")
        kernel = np.asarray(keras.ops.convert_to_numpy(block.effective_kernel()), np.float64)
        out_shape, fields, pool, cells, lsg_from, lsg_shape = self.geometry(block, ctx)
        analog = ctx.first
        q, w_scale = _quantize_weights_per_channel(kernel)
        in_unit = ctx.input_scale if analog else 1.0
        cur_mult, cur_shift = quantize_multipliers(w_scale * in_unit * (1 << U_FRAC))
        learns = block.name in ctx.learn
        spec = SpikingSpec(
            name=block.name,
            in_shape=ctx.shape,
            out_shape=out_shape,
            weights=q,
            weight_scale=w_scale,
            analog_input=analog,
            current_mult=cur_mult,
            current_shift=cur_shift,
            threshold=to_q(block.v_th, U_FRAC),
            gamma=to_q(block.gamma, Q15),
            psi_scale=to_q(neurons.SURROGATE_SCALE, Q15),
            learn=learns,
            **fields,
        )
        if block.v_th * 2 >= 16 or not 0 <= block.gamma < 1:
            raise ExportError(f"layer {block.name}: v_th={block.v_th} / gamma={block.gamma} do not fit the Q4.11 membrane.")
        amount = neurons.subtract_amount(getattr(block, "reset", "subtract"), block.gamma, block.v_th)
        if amount is None or amount * 2 >= 16:
            raise ExportError(
                f"layer {block.name} uses reset={block.reset!r} (gamma={block.gamma}); the on-device engine "
                "implements subtract resets u = gamma (u - r o) + I with r below 8 only (reset='subtract' or "
                "'subtract_after_leak'). Re-import the network with `tess import --lif-reset subtract` and "
                "fine-tune it, or export it with --target nir."
            )
        spec.reset_amount = to_q(amount, U_FRAC)
        if learns:
            rule = ctx.rule
            n = block.lsg_size
            spec.lambda_pre = rule["lambda_pre"]
            spec.lambda_post = rule["lambda_post"]
            spec.alpha_pre = rule["alpha_pre"]
            spec.alpha_post = rule["alpha_post"]
            spec.trace_frac = _trace_frac(127.0 if analog else 1.0, spec.lambda_pre)
            spec.lsg_pool, spec.lsg_size = pool, n
            spec.lsg_from, spec.lsg_shape = lsg_from, tuple(lsg_shape)
            spec.lsg_rows, spec.lsg_cols = cells
            areas = np.array([[(r1 - r0) * (c1 - c0) for c0, c1 in cells[1]] for r0, r1 in cells[0]], np.int64)
            spec.lsg_norm = int(np.lcm.reduce(areas.ravel()))
            spec.lsg_weight = spec.lsg_norm // areas
            sign = np.sign(square_wave_basis(ctx.num_classes, n)).astype(np.int8)
            if np.any(sign[:, 1:] == 0):
                raise ExportError(f"layer {block.name}: the LSG matrix has zeros outside column 0 (n={n}).")
            spec.lsg_sign = sign
            # Cell sums are weighted by L / area, so 1/(n*L) turns them into B's 1/n times the average.
            spec.lsg_mult, spec.lsg_shift = quantize_multiplier((1 << LOGIT_FRAC) / (n * spec.lsg_norm))
            # psi (and so e_pre, h and e_post) at 2**-k of its scale: a row's step sum stays below
            # 2**31, which GRAD_SHIFT brings within 2**14 of the int16 accumulators.
            nominal = spec.psi_scale
            spec.psi_scale = max(1, round(nominal / 2 ** _psi_shift(spec, ctx.following, int(np.prod(out_shape[:-1])))))
            # acc unit: 2**-(15 + F - grad_shift) input units, times 1/(n*L) (B and poolᵀ with the cell
            # weights), in weights of scale w_scale, times the psi scale given up; pending update in Q16
            # weight LSB.
            acc_real = in_unit / (n * spec.lsg_norm) * 2.0 ** -(Q15 + spec.trace_frac - spec.grad_shift)
            acc_real *= nominal / spec.psi_scale
            spec.update_mult, spec.update_shift = quantize_multipliers16(
                ctx.learning_rate * acc_real / w_scale * (1 << UPDATE_FRAC)
            )
        return spec

    def describe(self, layer):
        source = "int8 input" if layer.analog_input else "spikes"
        lsg = f"LSG after {layer.lsg_from}" if layer.lsg_from else "LSG on its own spikes"
        learns = (
            f"learns (q trace Q{15 - layer.trace_frac}.{layer.trace_frac}, alpha_post {layer.alpha_post}, {lsg})"
            if layer.learn
            else "frozen"
        )
        return (
            f"{layer.name}: LIF {layer.kind} {self.geometry_text(layer)}, {list(layer.in_shape)} -> "
            f"{list(layer.out_shape)} from {source}, {learns}"
        )

    # -- golden model -----------------------------------------------------------------
    def golden_init(self, engine, layer):
        engine.weights[layer.name] = layer.weights.astype(np.int64)

    def golden_zero_grads(self, engine, layer):
        if layer.learn:
            engine.grads[layer.name] = np.zeros(layer.weights.shape, np.int64)

    def golden_reset(self, engine, layer):
        b = engine.batch
        engine.u[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)
        engine.o[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)
        if layer.learn:
            engine.q[layer.name] = np.zeros((b,) + layer.in_shape, np.int64)
            if layer.alpha_post:
                engine.h[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)

    def current(self, engine, layer, x):
        w = engine.weights[layer.name].astype(np.float64)
        acc = exact(self.columns(layer, x) @ w.reshape(-1, w.shape[-1]))
        return rescale(acc, layer.current_mult, layer.current_shift)

    def accumulate(self, engine, layer, x, q, e_pre, e_post):
        """dW = sat16(dW + sat16(round(step / 2**grad_shift))) with the exact step
        e_pre (x) q + e_post (x) x 2**F summed over the output positions."""
        scale_x = x * (1 << layer.trace_frac)
        q_cols, x_cols = self.columns(layer, q), self.columns(layer, scale_x)
        rows = q_cols.shape[-1]
        step = q_cols.reshape(-1, rows).T @ e_pre.reshape(-1, layer.out_channels).astype(np.float64)
        step += x_cols.reshape(-1, rows).T @ e_post.reshape(-1, layer.out_channels).astype(np.float64)
        step = exact(step).reshape(layer.weights.shape)
        engine.grads[layer.name] = sat16(engine.grads[layer.name] + sat16(round_shift(step, layer.grad_shift)))

    def golden_step(self, engine, layer, x, labels):
        name = layer.name
        u_prev, o_prev = engine.u[name], engine.o[name]
        learns = labels is not None and layer.learn
        if learns:
            engine.q[name] = sat16(round_shift(engine.q[name] * layer.lambda_pre, Q15) + x * (1 << layer.trace_frac))
            if layer.alpha_post:
                # h[0] = 0: no past membrane at the first step (not psi(0)).
                past = psi_q15(u_prev, layer.threshold, layer.psi_scale) if engine.t > 0 else 0
                engine.h[name] = sat16(round_shift(engine.h[name] * layer.lambda_post, Q15) + past)
        current = self.current(engine, layer, x)
        reset = layer.threshold if layer.reset_amount is None else layer.reset_amount
        leak = round_shift((u_prev - reset * o_prev) * layer.gamma, Q15)
        u = sat16(leak + current)
        o = (u >= layer.threshold).astype(np.int64)
        engine.u[name], engine.o[name] = u, o
        if learns and engine.t >= engine.spec.t_l:
            if layer.lsg_from is None:
                g = self.learning_signal(engine, layer, o, labels)
            else:  # the block output: after the max-pool, back through its first-max routing
                pool = engine.layers_by_name[layer.lsg_from]
                g = maxpool.max_pool_route(pool, o, self.learning_signal(engine, layer, maxpool.max_pool(pool, o), labels))
            # e_pre and e_post saturate to int16: the correlation multiplies int16 pairs.
            e_pre = sat16(layer.alpha_pre * round_shift(g * psi_q15(u, layer.threshold, layer.psi_scale), Q15))
            if layer.alpha_post:
                e_post = sat16(layer.alpha_post * round_shift(g * engine.h[name], Q15))
            else:
                e_post = np.zeros_like(e_pre)
            self.accumulate(engine, layer, x, engine.q[name], e_pre, e_post)
        return o

    def golden_update(self, engine, layer):
        grad = engine.grads[layer.name]
        channel = np.arange(grad.size) % layer.out_channels
        delta = rescale(grad.ravel(), layer.update_mult[channel], layer.update_shift[channel])
        w = engine.weights[layer.name]
        engine.weights[layer.name] = stochastic_round_update(
            w.ravel(), delta, engine.draw_pairs(grad.size), -WEIGHT_MAX, WEIGHT_MAX, engine.rounding
        ).reshape(w.shape)

    def learned_bytes(self, engine, layer):
        return engine.weights[layer.name].astype(np.int8).tobytes() if layer.learn else b""

    def step_buffers(self, engine, layer):
        name = layer.name
        out = {f"{name}.u": engine.u[name][0].astype(np.int16), f"{name}.o": engine.o[name][0].astype(np.uint8)}
        if name in engine.q:
            out[f"{name}.q"] = engine.q[name][0].astype(np.int16)
        if name in engine.h:
            out[f"{name}.h"] = engine.h[name][0].astype(np.int16)
        return out

    def grad_buffers(self, engine, layer):
        return {f"{layer.name}.g": engine.grads[layer.name].astype(np.int16)} if layer.learn else {}

    def weight_buffers(self, engine, layer):
        return {f"{layer.name}.w": engine.weights[layer.name].astype(np.int8)} if layer.learn else {}

    # -- memory -----------------------------------------------------------------------
    def budget_row(self, layer):
        weights = int(layer.weights.size)
        n, nin, co = layer.num_neurons, layer.num_inputs, layer.out_channels
        flash = weights + _multipliers(co)
        ram = 2 * n + n  # u int16, o uint8
        parts = [f"{weights} int8 weights ({'RAM + flash image' if layer.learn else 'flash'})", f"u/o {3 * n} B"]
        if layer.learn:
            ram += weights + 2 * weights + 2 * nin
            flash += _multipliers(co) + layer.lsg_sign.shape[0] * ((layer.lsg_size + 7) // 8)
            parts += [f"dW {2 * weights} B", f"q {2 * nin} B"]
            if layer.alpha_post:
                ram += 2 * n
                parts.append(f"h {2 * n} B")
        return BudgetRow(layer.name, flash, ram, ", ".join(parts))

    # -- TFLite-Micro -----------------------------------------------------------------
    def tflm_constants(self, block):
        import keras
        import tensorflow as tf

        return tf.constant(keras.ops.convert_to_numpy(block.effective_kernel()))

    def tflm_state_shape(self, block):
        return tuple(int(s) for s in block.state_shape)

    def tflm_step(self, block, kernel, h, state):
        import tensorflow as tf

        from tess_keras import neurons

        u_prev, o_prev = state
        current = self.tflm_current(block, kernel, h)
        reset = neurons.subtract_amount(getattr(block, "reset", "subtract"), block.gamma, block.v_th)
        u = block.gamma * (u_prev - (block.v_th if reset is None else reset) * o_prev) + current
        o = tf.nn.relu6((u - block.v_th) * SPIKE_GAIN) * (1.0 / 6.0)
        return o, (u, o)
