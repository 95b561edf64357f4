"""The engine's number formats and integer primitives, shared by the layer kinds.

The quantisers turn real parameters into the engine's integers (``spec``); the
primitives are the integer operations of the runtime (``firmware/runtime/tess_runtime.h``)
as the golden model performs them. The number formats are documented in ``spec``.
"""

import math

import numpy as np

from tess_keras.export.layers.base import ExportError

U_FRAC = 11  # membrane Q4.11
Q15 = 15
LOGIT_FRAC = 12  # softmax inputs Q19.12
UPDATE_FRAC = 16  # pending update in weight LSB, Q16, before stochastic rounding
SURROGATE_SCALE = 0.3
WEIGHT_MAX = 127
GRAD_SHIFT = 17  # a step's dW sums (below 2**31 where e is within the e limit) into the int16 accumulators, within 2**14

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
LOG2E_Q12 = 5909  # log2(e) in Q12
EXP2_LUT = np.array([round(32768 * 2.0 ** (-i / 256.0)) for i in range(256)], np.int64)
GOLDEN_RATIO_32 = 0x9E3779B9
MASK32 = 0xFFFFFFFF
FNV_OFFSET, FNV_PRIME = 0x811C9DC5, 0x01000193


# -- quantisers ------------------------------------------------------------------------
def quantize_multiplier(real):
    """``real ≈ mult * 2**-shift`` with ``mult`` < 2**31 and 1 <= shift <= 62.

    Args:
        real: a non-negative real multiplier below 2**30.

    Returns:
        ``(mult, shift)`` as Python ints; tiny reals give a small or zero mult.
    """
    real = float(real)
    if real < 0 or not math.isfinite(real):
        raise ExportError(f"internal: multiplier {real} is negative or not finite.")
    if real == 0.0:
        return 0, 1
    if real >= 2.0**30:
        raise ExportError(f"a fixed-point multiplier of {real:.4g} is too large for the int32 engine.")
    shift = 30 - math.floor(math.log2(real))
    mult = round(real * 2.0**shift)
    if mult >= 2**31:
        mult //= 2
        shift -= 1
    if shift < 1:
        shift, mult = 1, round(real * 2.0)
    if shift > 62:
        shift, mult = 62, round(real * 2.0**62)
    return int(mult), int(shift)


def quantize_multipliers(reals):
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, np.float64).ravel()]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def quantize_multiplier16(real):
    """``real ≈ mult * 2**-shift`` with ``mult`` < 2**15 and shift <= 31 where ``real`` allows, so
    that an int16 value times ``mult`` plus the rounding fits int32 (the update of the int16
    dW accumulators: ``tess_update_fast.cc``); else ``quantize_multiplier``'s."""
    real = float(real)
    if real <= 0.0 or not math.isfinite(real):
        return quantize_multiplier(real)
    shift = 14 - math.floor(math.log2(real))
    mult = round(real * 2.0**shift)
    if mult >= 2**15:
        mult //= 2
        shift -= 1
    if not 1 <= shift <= 31:
        return quantize_multiplier(real)
    return int(mult), int(shift)


def quantize_multipliers16(reals):
    pairs = [quantize_multiplier16(r) for r in np.asarray(reals, np.float64).ravel()]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def to_q(value, frac):
    return int(round(float(value) * (1 << frac)))


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


def exact(x):
    """float64 results of integer products (exact below 2**53) back to int64."""
    return np.asarray(x).astype(np.int64)
