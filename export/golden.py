"""Python golden model of the generated C++ engine's integer arithmetic.

Every operation here is the integer operation the engine performs, in the
same order where order matters (saturation, rounding, the random stream),
so the host build of the generated code must match it bit for bit. Arrays
carry a leading batch axis for fast evaluation; learning needs batch 1
(one on-device SGD step per sample).
"""

import numpy as np

from tess_keras.export.spec import (
    Q15,
    U_FRAC,
    UPDATE_FRAC,
    WEIGHT_MAX,
    FlattenSpec,
    PoolSpec,
    ReadoutSpec,
    SpikingSpec,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
LOG2E_Q12 = 5909  # log2(e) in Q12
EXP2_LUT = np.array([round(32768 * 2.0 ** (-i / 256.0)) for i in range(256)], np.int64)
GOLDEN_RATIO_32 = 0x9E3779B9
MASK32 = 0xFFFFFFFF
FNV_OFFSET, FNV_PRIME = 0x811C9DC5, 0x01000193


# -- the runtime's primitives (firmware/runtime/tess_runtime.h) -------------------
def sat32(x):
    return np.clip(x, INT32_MIN, INT32_MAX).astype(np.int64)


def sat16(x):
    return np.clip(x, -32768, 32767).astype(np.int64)


def rescale(x, mult, shift):
    """round(x * mult / 2**shift), saturated to int32 (``tess_rescale``)."""
    x = np.asarray(x, np.int64)
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    return sat32((x * mult + np.left_shift(np.int64(1), shift - 1)) >> shift)


def round_shift(x, shift):
    """round(x / 2**shift) with ties up (arithmetic shift)."""
    return (np.asarray(x, np.int64) + (1 << (shift - 1))) >> shift


def psi_q15(u, threshold, scale):
    """Surrogate ``scale * max(1 - |u - v_th|, 0)``: Q11 membrane -> Q15."""
    distance = np.abs(np.asarray(u, np.int64) - threshold)
    rest = np.maximum((1 << U_FRAC) - distance, 0)
    return round_shift(rest * scale, U_FRAC)


def softmax_error(logits_q12, labels):
    """``softmax(z) - onehot(y)`` in Q15 from Q12 logits (``tess_softmax_error``)."""
    z = np.asarray(logits_q12, np.int64)
    d = z.max(axis=-1, keepdims=True) - z  # >= 0
    t = (d * LOG2E_Q12 + (1 << 11)) >> 12  # -d * log2(e), Q12
    whole, frac = t >> 12, t & 4095
    e = np.where(whole >= 16, 0, EXP2_LUT[frac >> 4] >> np.minimum(whole, 15))
    total = e.sum(axis=-1, keepdims=True)
    p = (e * 32768 + total // 2) // total
    onehot = np.arange(z.shape[-1])[None, :] == np.asarray(labels)[:, None]
    return p - np.where(onehot, 32768, 0)


def random_stream(seed, counter, count):
    """``count`` draws of the counter-based generator (``tess_random``):
    lowbias32(seed + k * 0x9E3779B9) for k = counter, counter+1, ..."""
    k = np.arange(counter, counter + count, dtype=np.uint64)
    x = (np.uint64(seed) + k * np.uint64(GOLDEN_RATIO_32)) & np.uint64(MASK32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(MASK32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(MASK32)
    x ^= x >> np.uint64(16)
    return x.astype(np.int64)


def stochastic_round_update(values, delta_q16, random, low, high, rounding="stochastic"):
    """``clamp(values - delta, low, high)`` with ``delta`` in Q16 of one LSB.

    Stochastic rounding adds a uniform 16-bit draw before the floor, so the
    expected step equals the exact (sub-LSB) update; ``"nearest"`` is the
    baseline that loses updates below half an LSB.
    """
    step = -np.asarray(delta_q16, np.int64)
    if rounding == "stochastic":
        step = (step + (random & 0xFFFF)) >> UPDATE_FRAC
    else:
        step = (step + (1 << (UPDATE_FRAC - 1))) >> UPDATE_FRAC
    return np.clip(np.asarray(values, np.int64) + step, low, high)


def fnv1a(data, state=FNV_OFFSET):
    for byte in bytes(data):
        state = ((state ^ byte) * FNV_PRIME) & MASK32
    return state


def _im2col(x, layer):
    """Patches [batch, OH, OW, K*K*Cin] (tap order kh, kw, ci like the kernel),
    zero padded, as float64: integer products and sums here stay far below
    2**53, so float64 BLAS gives the exact integers."""
    k, s = layer.kernel_size, layer.stride
    pt, pl = layer.pad
    oh, ow = layer.out_shape[:2]
    h, w = layer.in_shape[:2]
    pad_b = max((oh - 1) * s + k - h - pt, 0)
    pad_r = max((ow - 1) * s + k - w - pl, 0)
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), (pt, pad_b), (pl, pad_r), (0, 0)))
    taps = [
        padded[:, kh : kh + s * (oh - 1) + 1 : s, kw : kw + s * (ow - 1) + 1 : s, :]
        for kh in range(k)
        for kw in range(k)
    ]
    return np.concatenate(taps, axis=-1)


def _exact(x):
    return np.asarray(x).astype(np.int64)


class GoldenEngine:
    """Integer model of the generated engine (same C API, numpy inside).

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
        self.weights = {}
        for layer in spec.layers:
            if isinstance(layer, SpikingSpec):
                self.weights[layer.name] = layer.weights.astype(np.int64)
            elif isinstance(layer, ReadoutSpec):
                self.weights[layer.name] = layer.weights.astype(np.int64)
                self.bias = layer.bias.astype(np.int64)
        self._pools = {layer.name: layer for layer in spec.layers if isinstance(layer, PoolSpec)}
        self.counter = 0
        self._zero_grads()
        self.reset()

    # -- state -------------------------------------------------------------------
    def _zero_grads(self):
        self.grads = {layer.name: np.zeros(layer.weights.shape, np.int64) for layer in self.spec.learnable}
        self.bias_grad = np.zeros(self.spec.num_classes, np.int64)

    def reset(self):
        """Zero membranes, spikes, traces and the logit sum (``tess_reset``)."""
        b = self.batch
        self.u, self.o, self.q, self.h = {}, {}, {}, {}
        for layer in self.spec.spiking:
            self.u[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)
            self.o[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)
            if layer.learn:
                self.q[layer.name] = np.zeros((b,) + layer.in_shape, np.int64)
                if layer.alpha_post:
                    self.h[layer.name] = np.zeros((b,) + layer.out_shape, np.int64)
        self.logits = np.zeros((b, self.spec.num_classes), np.int64)
        self.logit_sum = np.zeros((b, self.spec.num_classes), np.int64)
        self.t = 0

    # -- one time step -------------------------------------------------------------
    def _current(self, layer, x):
        w = self.weights[layer.name].astype(np.float64)
        if layer.kind == "dense":
            acc = _exact(x.astype(np.float64) @ w)
        else:
            acc = _exact(_im2col(x, layer) @ w.reshape(-1, w.shape[-1]))
        return rescale(acc, layer.current_mult, layer.current_shift)

    def _learning_signal(self, layer, spikes, labels):
        """g per position of the map ``spikes`` (of shape ``layer.lsg_shape``): the sum
        of the signals of the LSG cells it lies in (adaptive windows may overlap).
        Cell spike counts and cell signals are weighted by ``L / area`` (exact
        integers); the common 1/(n*L) sits in the LSG and learning-rate multipliers."""
        k = layer.lsg_pool
        sign = layer.lsg_sign.astype(np.int64)
        if layer.kind != "conv":
            z = rescale(spikes @ sign.T, layer.lsg_mult, layer.lsg_shift)
            return softmax_error(z, labels) @ sign
        ch = layer.lsg_shape[-1]
        weight = np.asarray(layer.lsg_weight, np.int64)
        cells = np.zeros((self.batch, ch, k, k), np.int64)
        for i, (r0, r1) in enumerate(layer.lsg_rows):
            for j, (c0, c1) in enumerate(layer.lsg_cols):
                cells[:, :, i, j] = spikes[:, r0:r1, c0:c1, :].sum(axis=(1, 2)) * weight[i, j]
        z = rescale(cells.reshape(self.batch, -1) @ sign.T, layer.lsg_mult, layer.lsg_shift)
        g = (softmax_error(z, labels) @ sign).reshape(self.batch, ch, k, k) * weight
        out = np.zeros((self.batch,) + tuple(layer.lsg_shape), np.int64)
        for i, (r0, r1) in enumerate(layer.lsg_rows):
            for j, (c0, c1) in enumerate(layer.lsg_cols):
                out[:, r0:r1, c0:c1, :] += g[:, None, None, :, i, j]
        return out

    def _accumulate(self, layer, x, q, e_pre, e_post):
        scale_x = x * (1 << layer.trace_frac)
        if layer.kind == "dense":
            q_cols, x_cols = q.astype(np.float64), scale_x.astype(np.float64)
        else:
            q_cols, x_cols = _im2col(q, layer), _im2col(scale_x, layer)
        rows = q_cols.shape[-1]
        step = q_cols.reshape(-1, rows).T @ e_pre.reshape(-1, layer.out_channels).astype(np.float64)
        step += x_cols.reshape(-1, rows).T @ e_post.reshape(-1, layer.out_channels).astype(np.float64)
        step = _exact(step).reshape(layer.weights.shape)
        self.grads[layer.name] = sat32(self.grads[layer.name] + (step >> layer.grad_shift))

    def step(self, x, labels=None):
        """One time step (``tess_step``). ``x``: int8 [batch, *input_shape];
        ``labels``: int [batch] (>= 0 accumulates TESS updates) or None."""
        x = np.asarray(x, np.int64).reshape((self.batch,) + tuple(self.spec.input_shape))
        learning = labels is not None and bool(np.all((np.asarray(labels) >= 0) & (np.asarray(labels) < self.spec.num_classes)))
        if learning:
            if self.batch != 1:
                raise ValueError("learning runs one sample at a time (batch=1)")
            labels = np.asarray(labels, np.int64).reshape(1)
        for layer in self.spec.layers:
            if isinstance(layer, SpikingSpec):
                name = layer.name
                u_prev, o_prev = self.u[name], self.o[name]
                learns = learning and layer.learn
                if learns:
                    self.q[name] = sat16(round_shift(self.q[name] * layer.lambda_pre, Q15) + x * (1 << layer.trace_frac))
                    if layer.alpha_post:
                        # h[0] = 0: no past membrane at the first step (not psi(0)).
                        past = psi_q15(u_prev, layer.threshold, layer.psi_scale) if self.t > 0 else 0
                        self.h[name] = sat16(round_shift(self.h[name] * layer.lambda_post, Q15) + past)
                current = self._current(layer, x)
                reset = layer.threshold if layer.reset_amount is None else layer.reset_amount
                leak = round_shift((u_prev - reset * o_prev) * layer.gamma, Q15)
                u = sat16(leak + current)
                o = (u >= layer.threshold).astype(np.int64)
                self.u[name], self.o[name] = u, o
                if learns and self.t >= self.spec.t_l:
                    if layer.lsg_from is None:
                        g = self._learning_signal(layer, o, labels)
                    else:  # the block output: after the max-pool, back through its first-max routing
                        pool = self._pools[layer.lsg_from]
                        g = self._max_pool_route(pool, o, self._learning_signal(layer, self._max_pool(pool, o), labels))
                    e_pre = layer.alpha_pre * round_shift(g * psi_q15(u, layer.threshold, layer.psi_scale), Q15)
                    if layer.alpha_post:
                        e_post = layer.alpha_post * round_shift(g * self.h[name], Q15)
                    else:
                        e_post = np.zeros_like(e_pre)
                    self._accumulate(layer, x, self.q[name], e_pre, e_post)
                x = o
            elif isinstance(layer, PoolSpec):
                x = self._max_pool(layer, x)
            elif isinstance(layer, FlattenSpec):
                x = x.reshape(self.batch, -1)
            else:
                w = self.weights[layer.name]
                self.logits = sat32(self.bias[None, :] + x @ w)
                self.logit_sum = sat32(self.logit_sum + self.logits)
                if learning and layer.learn:
                    error = softmax_error(rescale(self.logits, layer.logit_mult, layer.logit_shift), labels)
                    self.grads[layer.name] = sat32(self.grads[layer.name] + x.T @ error)
                    self.bias_grad = sat32(self.bias_grad + error.sum(axis=0))
        self.t += 1

    def _pool_windows(self, layer, x, fill):
        """The pool's window offsets (row-major) as strided views of ``x`` padded with ``fill``."""
        ph, pw = layer.pool
        sh, sw = layer.stride
        pt, pl = layer.pad
        oh, ow, _ = layer.out_shape
        h, w = layer.in_shape[:2]
        pads = ((0, 0), (pt, max((oh - 1) * sh + ph - h - pt, 0)), (pl, max((ow - 1) * sw + pw - w - pl, 0)), (0, 0))
        padded = np.pad(x, pads, constant_values=fill)
        views = [
            (slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
            for i in range(ph)
            for j in range(pw)
        ]
        return padded, views

    def _max_pool(self, layer, x):
        padded, views = self._pool_windows(layer, x, 0)
        out = np.zeros((self.batch,) + tuple(layer.out_shape), np.int64)
        for view in views:
            out = np.maximum(out, padded[view])
        return out

    def _max_pool_route(self, layer, x, g):
        """The max-pool's gradient: each window's ``g`` goes to the window's first
        maximum of ``x`` in row-major order (padding never wins); overlapping
        windows add up. Integer, exact."""
        padded, views = self._pool_windows(layer, x, -1)
        peak = self._max_pool(layer, x)
        taken = np.zeros(peak.shape, bool)
        routed = np.zeros(padded.shape, np.int64)
        for view in views:
            wins = (padded[view] == peak) & ~taken
            taken |= wins
            routed[view] += np.where(wins, g, 0)
        pt, pl = layer.pad
        h, w = layer.in_shape[:2]
        return routed[:, pt : pt + h, pl : pl + w, :]

    # -- on-device SGD -------------------------------------------------------------------
    def apply_update(self):
        """One SGD step from the accumulated updates, then clear them (``tess_apply_update``)."""
        for layer in self.spec.learnable:
            grad = self.grads[layer.name]
            if isinstance(layer, SpikingSpec):
                channel = np.arange(grad.size) % layer.out_channels
                delta = rescale(grad.ravel(), layer.update_mult[channel], layer.update_shift[channel])
            else:
                delta = rescale(grad.ravel(), layer.update_mult, layer.update_shift)
            random = random_stream(self.spec.seed, self.counter, grad.size)
            self.counter += grad.size
            w = self.weights[layer.name]
            self.weights[layer.name] = stochastic_round_update(
                w.ravel(), delta, random, -WEIGHT_MAX, WEIGHT_MAX, self.rounding
            ).reshape(w.shape)
            if isinstance(layer, ReadoutSpec):
                delta = rescale(self.bias_grad, layer.update_mult, layer.update_shift)
                random = random_stream(self.spec.seed, self.counter, delta.size)
                self.counter += delta.size
                self.bias = stochastic_round_update(self.bias, delta, random, INT32_MIN, INT32_MAX, self.rounding)
        self._zero_grads()

    # -- results -------------------------------------------------------------------
    def predict(self):
        """argmax of the logits summed since reset (first maximum wins)."""
        return np.argmax(self.logit_sum, axis=-1)

    def state_hash(self):
        """FNV-1a over every learnable weight (int8 bytes; readout bias as int32 LE)."""
        state = FNV_OFFSET
        for layer in self.spec.learnable:
            state = fnv1a(self.weights[layer.name].astype(np.int8).tobytes(), state)
            if isinstance(layer, ReadoutSpec):
                state = fnv1a(self.bias.astype("<i4").tobytes(), state)
        return state

    def step_buffers(self):
        """What the engine exposes after each step (batch 1), name -> array in C type."""
        out = {}
        for layer in self.spec.spiking:
            out[f"{layer.name}.u"] = self.u[layer.name][0].astype(np.int16)
            out[f"{layer.name}.o"] = self.o[layer.name][0].astype(np.uint8)
            if layer.name in self.q:
                out[f"{layer.name}.q"] = self.q[layer.name][0].astype(np.int16)
            if layer.name in self.h:
                out[f"{layer.name}.h"] = self.h[layer.name][0].astype(np.int16)
        out["logits"] = self.logits[0].astype(np.int32)
        out["logit_sum"] = self.logit_sum[0].astype(np.int32)
        return out

    def grad_buffers(self):
        out = {f"{name}.g": g.astype(np.int32) for name, g in self.grads.items()}
        if self.spec.readout.learn:
            out[f"{self.spec.readout.name}.gb"] = self.bias_grad.astype(np.int32)
        return out

    def weight_buffers(self):
        out = {}
        for layer in self.spec.learnable:
            out[f"{layer.name}.w"] = self.weights[layer.name].astype(np.int8)
            if isinstance(layer, ReadoutSpec):
                out[f"{layer.name}.b"] = self.bias.astype(np.int32)
        return out


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
