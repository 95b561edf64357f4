"""From a trained Keras spiking model to the integer engine's parameters.

Everything the generated C++ engine and the Python golden model need is
computed here once, so both read the very same integers.

Number formats (see also the README section "Export to Cortex-M"):

- input ``x``: int8, real = x * input_scale (per tensor, symmetric).
- weights: int8 in [-127, 127]; spiking layers have one scale per output
  channel, the readout one scale per tensor; readout bias int32 in units of
  the readout weight scale.
- membrane ``u``: int16 Q4.11 (range [-16, 16), LSB 1/2048), saturating.
- surrogate ``psi(u)``, post trace ``h``, softmax probabilities and errors:
  Q15 (int16/int32).
- pre trace ``q``: int16, ``Q(15-F).F`` of the layer's input unit (one spike,
  or one input LSB for the first layer) with ``F`` = ``trace_frac`` chosen so
  the trace's largest value fits.
- LSG and readout logits for the softmax: int32 Q19.12.
- gradient accumulators: int32, saturating; scale documented per layer.
- real multipliers (current scale, learning rate...) are ``mult * 2**-shift``
  with an int32 ``mult`` (TFLite-Micro style), applied with rounding.
"""

import math

import numpy as np

from tess_keras.export.spec_types import (  # noqa: F401  (re-exported: the layer specs live there)
    GRAD_SHIFT,
    EngineSpec,
    FlattenSpec,
    PoolSpec,
    ReadoutSpec,
    SpikingSpec,
)

U_FRAC = 11  # membrane Q4.11
Q15 = 15
LOGIT_FRAC = 12  # softmax inputs Q19.12
UPDATE_FRAC = 16  # pending update in weight LSB, Q16, before stochastic rounding
SURROGATE_SCALE = 0.3
WEIGHT_MAX = 127


class ExportError(Exception):
    """A model or option the exporter cannot express. The message names it and says what to do."""


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


def to_q(value, frac):
    return int(round(float(value) * (1 << frac)))


def _window_output(size, window, stride, padding):
    """Output length and leading padding of a Keras conv/pool window along one axis.

    Args:
        size: input length.
        window: kernel or pool length.
        stride: step between windows.
        padding: ``"same"`` or ``"valid"``.
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        return out, total // 2
    return (size - window) // stride + 1, 0


def adaptive_windows(size, k):
    """PyTorch's adaptive_avg_pool windows along one axis: ``[floor(i*size/k), ceil((i+1)*size/k))``
    for i < k (as ``tess_keras.layers.base.adaptive_pool_matrix``); neighbours overlap when k does
    not divide size."""
    return tuple((i * size // k, -(-(i + 1) * size // k)) for i in range(k))


def _pool_output(pool, shape):
    """(H', W', C) of a Keras ``MaxPooling2D`` on an [H, W, C] map."""
    h, w, c = shape
    oh, _ = _window_output(h, pool.pool_size[0], pool.strides[0], pool.padding)
    ow, _ = _window_output(w, pool.pool_size[1], pool.strides[1], pool.padding)
    return (oh, ow, c)


def _quantize_weights_per_channel(kernel):
    """Symmetric int8 per output channel (last axis)."""
    flat = kernel.reshape(-1, kernel.shape[-1])
    scale = np.abs(flat).max(axis=0) / WEIGHT_MAX
    scale = np.where(scale > 0, scale, 1e-8)
    q = np.clip(np.round(kernel / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, scale.astype(np.float64)


def _rule_constants(rule):
    from tess_keras.rules import tess as tess_rule

    defaults = tess_rule.TESS()
    source = rule if isinstance(rule, tess_rule.TESS) else defaults
    constants = {}
    for name in ("alpha_pre", "alpha_post"):
        value = float(getattr(source, name))
        if value not in (-1.0, 0.0, 1.0):
            raise ExportError(
                f"the model's learning rule has {name}={value:g}; the on-device TESS engine supports -1, 0 or +1. "
                f"Retrain with --alpha-post -1, 0 or 1."
            )
        constants[name] = int(value)
    for name in ("lambda_pre", "lambda_post"):
        value = float(getattr(source, name))
        if not 0.0 <= value < 1.0:
            raise ExportError(f"the model's learning rule has {name}={value:g}; the engine needs 0 <= lambda < 1.")
        constants[name] = to_q(value, Q15)
    constants["t_l"] = int(getattr(source, "t_l", 0))
    constants["lsg_source"] = getattr(source, "lsg_source", defaults.lsg_source)
    if constants["lsg_source"] not in ("block", "layer"):
        raise ExportError(
            f"the model's learning rule has lsg_source={constants['lsg_source']!r}; the engine supports 'block' or "
            f"'layer'. Retrain with --lsg-source block or layer."
        )
    return constants


def _trace_frac(max_input, lambda_pre_q15):
    """Fraction bits F of the int16 pre trace so that its largest value fits."""
    lam = lambda_pre_q15 / 32768.0
    largest = max_input / (1.0 - lam) + 1.0
    frac = int(math.floor(math.log2(32767.0 / largest)))
    return max(0, min(frac, 14))


def build_spec(model, input_scale, time_steps, learn=None, learning_rate=0.005, seed=0x7E55):
    """Turn a trained ``SpikingSequential`` into an ``EngineSpec``.

    Args:
        model: a built ``tess_keras.models.SpikingSequential``.
        input_scale: real value of one input LSB (from the representative set).
        time_steps: T.
        learn: names of the layers that learn on device (None: all layers with
            weights).
        learning_rate: on-device SGD learning rate (per sample); the default is
            the exporter's for static images.
        seed: seed of the stochastic-rounding generator.

    Raises:
        ExportError: naming any layer or option the engine cannot express.
    """
    import keras

    from tess_keras import neurons
    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.rules.lsg import square_wave_basis

    blocks = list(model.blocks)
    weighted = [b.name for b in blocks if isinstance(b, (SpikingConv2D, SpikingDense, Readout))]
    if learn is None:
        learn = set(weighted)
    else:
        learn = set(learn)
        unknown = sorted(learn - set(weighted))
        if unknown:
            raise ExportError(
                f"--learn names {', '.join(unknown)}, which the model does not have as a layer with weights; "
                f"choose among: {', '.join(weighted)} (or 'none')."
            )
    rule = _rule_constants(model.rule)
    num_classes = int(model.readout.units)
    shape = tuple(int(s) for s in model.step_input_shapes[blocks[0].name][1:])
    input_shape = shape
    layers = []
    spikes = False  # does the current tensor hold binary spikes?
    for index, block in enumerate(blocks):
        kind = type(block).__name__
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if isinstance(block, (SpikingConv2D, SpikingDense)):
            if not spikes and layers:
                raise ExportError(f"layer {block.name} ({kind}) follows a non-spiking layer on analog values; "
                                  "the engine supports analog input only into the first layer.")
            kernel = np.asarray(keras.ops.convert_to_numpy(block.effective_kernel()), np.float64)
            if isinstance(block, SpikingConv2D):
                if len(shape) != 3:
                    raise ExportError(f"layer {block.name} (SpikingConv2D) needs a [H, W, C] input, got {shape}.")
                k, s = block.kernel_size, block.strides
                h, w, _ = shape
                oh, pt = _window_output(h, k, s, block.padding)
                ow, pl = _window_output(w, k, s, block.padding)
                out_shape = (oh, ow, block.filters)
                geometry = dict(kind="conv", kernel_size=k, stride=s, pad=(pt, pl))
                pool = block.lsg_pool
                lsg_from, lsg_shape = None, out_shape
                if rule["lsg_source"] == "block" and isinstance(following, keras.layers.MaxPooling2D):
                    lsg_from, lsg_shape = following.name, _pool_output(following, out_shape)
                if pool > 255:
                    raise ExportError(f"layer {block.name} (SpikingConv2D): lsg_pool={pool} is above the engine's 255.")
                cells = (adaptive_windows(lsg_shape[0], pool), adaptive_windows(lsg_shape[1], pool))
            else:
                if len(shape) != 1:
                    raise ExportError(f"layer {block.name} (SpikingDense) needs a flat input; add a Flatten before it.")
                out_shape = (block.units,)
                geometry = dict(kind="dense")
                pool, cells = 1, (((0, 1),), ((0, 1),))
                lsg_from, lsg_shape = None, out_shape
            analog = not layers
            q, w_scale = _quantize_weights_per_channel(kernel)
            in_unit = input_scale if analog else 1.0
            cur_mult, cur_shift = quantize_multipliers(w_scale * in_unit * (1 << U_FRAC))
            learns = block.name in learn
            spec = SpikingSpec(
                name=block.name,
                in_shape=shape,
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
                **geometry,
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
                sign = np.sign(square_wave_basis(num_classes, n)).astype(np.int8)
                if np.any(sign[:, 1:] == 0):
                    raise ExportError(f"layer {block.name}: the LSG matrix has zeros outside column 0 (n={n}).")
                spec.lsg_sign = sign
                # Cell sums are weighted by L / area, so 1/(n*L) turns them into B's 1/n times the average.
                spec.lsg_mult, spec.lsg_shift = quantize_multiplier((1 << LOGIT_FRAC) / (n * spec.lsg_norm))
                # acc unit: 2**-(15 + F - GRAD_SHIFT) input units, times 1/(n*L) (B and poolᵀ with the cell
                # weights), in weights of scale w_scale; pending update in Q16 weight LSB.
                acc_real = in_unit / (n * spec.lsg_norm) * 2.0 ** -(Q15 + spec.trace_frac - GRAD_SHIFT)
                spec.update_mult, spec.update_shift = quantize_multipliers(
                    learning_rate * acc_real / w_scale * (1 << UPDATE_FRAC)
                )
            layers.append(spec)
            shape, spikes = out_shape, True
        elif isinstance(block, keras.layers.MaxPooling2D):
            if not spikes:
                raise ExportError(f"layer {block.name} (MaxPooling2D) on analog input is not supported; "
                                  "put it after a spiking layer.")
            if len(shape) != 3 or getattr(block, "data_format", "channels_last") != "channels_last":
                raise ExportError(f"layer {block.name} (MaxPooling2D) needs a channels-last [H, W, C] spike map.")
            ph, pw = block.pool_size
            sh, sw = block.strides
            h, w, c = shape
            _, pt = _window_output(h, ph, sh, block.padding)
            _, pl = _window_output(w, pw, sw, block.padding)
            out_shape = _pool_output(block, shape)
            layers.append(PoolSpec(block.name, shape, out_shape, (ph, pw), (sh, sw), (pt, pl)))
            shape = out_shape
        elif isinstance(block, keras.layers.Flatten):
            out_shape = (int(np.prod(shape)),)
            layers.append(FlattenSpec(block.name, shape, out_shape))
            shape = out_shape
        elif isinstance(block, Readout):
            if len(shape) != 1:
                raise ExportError(f"layer {block.name} (Readout) needs a flat input; add a Flatten before it.")
            if not spikes:
                raise ExportError(f"layer {block.name} (Readout) must read spikes from a spiking layer.")
            if block.activation is not None and block.activation.__name__ != "linear":
                raise ExportError(f"layer {block.name} (Readout) has an activation; the engine needs a linear readout.")
            kernel = np.asarray(keras.ops.convert_to_numpy(block.kernel), np.float64)
            bias = (
                np.asarray(keras.ops.convert_to_numpy(block.bias), np.float64)
                if block.use_bias
                else np.zeros(kernel.shape[1])
            )
            scale = max(float(np.abs(kernel).max()) / WEIGHT_MAX, 1e-8)
            q = np.clip(np.round(kernel / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
            logit_mult, logit_shift = quantize_multiplier(scale * (1 << LOGIT_FRAC))
            spec = ReadoutSpec(
                name=block.name,
                in_size=int(shape[0]),
                num_classes=num_classes,
                weights=q,
                bias=np.round(bias / scale).astype(np.int64).clip(-(2**31) + 1, 2**31 - 1).astype(np.int32),
                weight_scale=scale,
                logit_mult=logit_mult,
                logit_shift=logit_shift,
                learn=block.name in learn,
            )
            # Q15 error sums (spike x probability) -> Q16 weight LSB.
            spec.update_mult, spec.update_shift = quantize_multiplier(
                learning_rate / scale * 2.0 ** (UPDATE_FRAC - Q15)
            )
            layers.append(spec)
        else:
            raise ExportError(
                f"layer {block.name} ({kind}) cannot be exported: the on-device engine supports SpikingConv2D, "
                f"SpikingDense, MaxPooling2D, Flatten and Readout. Replace or remove {block.name}."
            )
    if not layers or not isinstance(layers[-1], ReadoutSpec):
        raise ExportError("the model must end with a Readout layer.")
    if not any(isinstance(layer, SpikingSpec) for layer in layers):
        raise ExportError("the model has no spiking layer to export.")
    return EngineSpec(
        input_shape=input_shape,
        input_scale=float(input_scale),
        time_steps=int(time_steps),
        num_classes=num_classes,
        layers=layers,
        learning_rate=float(learning_rate),
        seed=int(seed),
        t_l=rule["t_l"],
        lsg_source=rule["lsg_source"],
    )
