"""``Readout``: the linear readout on binary spikes, per-step int32 logits summed over T.

When it learns, the error softmax(logits) - onehot(label) of every step accumulates
into its weight and bias updates.
"""

import dataclasses
from typing import ClassVar

import numpy as np

from tess_keras.export.layers.base import BudgetRow, ExportError, LayerKind
from tess_keras.export.layers.fixed_point import (
    INT32_MAX,
    INT32_MIN,
    LOGIT_FRAC,
    Q15,
    UPDATE_FRAC,
    WEIGHT_MAX,
    quantize_multiplier,
    quantize_multiplier16,
    rescale,
    sat32,
    softmax_error,
    stochastic_round_update,
)


@dataclasses.dataclass
class ReadoutSpec:
    """The linear readout on binary spikes: per-step int32 logits."""

    kind: ClassVar[str] = "readout"
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

    @property
    def out_shape(self):
        return (self.num_classes,)


class ReadoutKind(LayerKind):
    name = "readout"
    keras_name = "Readout"
    spec_type = ReadoutSpec
    has_weights = True

    def accepts(self, block):
        from tess_keras.layers import Readout

        return isinstance(block, Readout)

    def lower(self, block, ctx):
        import keras

        shape = ctx.shape
        if len(shape) != 1:
            raise ExportError(f"layer {block.name} (Readout) needs a flat input; add a Flatten before it.")
        if not ctx.spikes:
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
            num_classes=ctx.num_classes,
            weights=q,
            bias=np.round(bias / scale).astype(np.int64).clip(-(2**31) + 1, 2**31 - 1).astype(np.int32),
            weight_scale=scale,
            logit_mult=logit_mult,
            logit_shift=logit_shift,
            learn=block.name in ctx.learn,
        )
        # Q15 error sums (spike x probability) -> Q16 weight LSB; a multiplier below 2**15 where the
        # rate allows, so the update rescales the usual int16-sized sums in int32.
        spec.update_mult, spec.update_shift = quantize_multiplier16(
            ctx.learning_rate / scale * 2.0 ** (UPDATE_FRAC - Q15)
        )
        return spec

    def describe(self, layer):
        return f"{layer.name}: linear readout {layer.in_size} -> {layer.num_classes}, {'learns' if layer.learn else 'frozen'}"

    # -- golden model -----------------------------------------------------------------
    def golden_init(self, engine, layer):
        engine.weights[layer.name] = layer.weights.astype(np.int64)
        engine.bias = layer.bias.astype(np.int64)

    def golden_zero_grads(self, engine, layer):
        if layer.learn:
            engine.grads[layer.name] = np.zeros(layer.weights.shape, np.int64)
        engine.bias_grad = np.zeros(layer.num_classes, np.int64)

    def golden_reset(self, engine, layer):
        engine.logits = np.zeros((engine.batch, layer.num_classes), np.int64)
        engine.logit_sum = np.zeros((engine.batch, layer.num_classes), np.int64)

    def golden_step(self, engine, layer, x, labels):
        w = engine.weights[layer.name]
        engine.logits = sat32(engine.bias[None, :] + x @ w)
        engine.logit_sum = sat32(engine.logit_sum + engine.logits)
        if labels is not None and layer.learn:
            error = softmax_error(rescale(engine.logits, layer.logit_mult, layer.logit_shift), labels)
            engine.grads[layer.name] = sat32(engine.grads[layer.name] + x.T @ error)
            engine.bias_grad = sat32(engine.bias_grad + error.sum(axis=0))
        return engine.logits

    def golden_update(self, engine, layer):
        grad = engine.grads[layer.name]
        delta = rescale(grad.ravel(), layer.update_mult, layer.update_shift)
        w = engine.weights[layer.name]
        engine.weights[layer.name] = stochastic_round_update(
            w.ravel(), delta, engine.draw_pairs(grad.size), -WEIGHT_MAX, WEIGHT_MAX, engine.rounding
        ).reshape(w.shape)
        delta = rescale(engine.bias_grad, layer.update_mult, layer.update_shift)
        engine.bias = stochastic_round_update(
            engine.bias, delta, engine.draw(delta.size), INT32_MIN, INT32_MAX, engine.rounding
        )

    def learned_bytes(self, engine, layer):
        if not layer.learn:
            return b""
        return engine.weights[layer.name].astype(np.int8).tobytes() + engine.bias.astype("<i4").tobytes()

    def step_buffers(self, engine, layer):
        return {"logits": engine.logits[0].astype(np.int32), "logit_sum": engine.logit_sum[0].astype(np.int32)}

    def grad_buffers(self, engine, layer):
        if not layer.learn:
            return {}
        return {f"{layer.name}.g": engine.grads[layer.name].astype(np.int32),
                f"{layer.name}.gb": engine.bias_grad.astype(np.int32)}

    def weight_buffers(self, engine, layer):
        if not layer.learn:
            return {}
        return {f"{layer.name}.w": engine.weights[layer.name].astype(np.int8), f"{layer.name}.b": engine.bias.astype(np.int32)}

    # -- memory -----------------------------------------------------------------------
    def budget_row(self, layer):
        weights = int(layer.weights.size)
        c = layer.num_classes
        flash = weights + 4 * c
        ram = 8 * c  # step logits + logit sum
        detail = f"{weights} int8 weights + {c} int32 biases ({'RAM + flash image' if layer.learn else 'flash'})"
        if layer.learn:
            ram += weights + 4 * c + 4 * weights + 4 * c
            detail += f", dW {4 * (weights + c)} B"
        return BudgetRow(layer.name, flash, ram, detail)

    # -- TFLite-Micro -----------------------------------------------------------------
    def tflm_constants(self, block):
        import keras
        import tensorflow as tf

        kernel = tf.constant(keras.ops.convert_to_numpy(block.kernel))
        bias = tf.constant(keras.ops.convert_to_numpy(block.bias)) if block.use_bias else None
        return kernel, bias

    def tflm_step(self, block, constants, h, state):
        import tensorflow as tf

        kernel, bias = constants
        h = tf.matmul(h, kernel)
        if bias is not None:
            h = h + bias
        return h, None

    # -- generated engine -------------------------------------------------------------
    def engine_context(self, layer, gen):
        c = self.c_symbol(layer)
        classes = gen.spec.num_classes
        readout = dict(
            c=c,
            summary=self.describe(layer),
            learn=layer.learn,
            NIN=layer.in_size,
            weights=layer.weights.ravel().tolist(),
            bias=layer.bias,
            logit_mult=layer.logit_mult,
            logit_shift=layer.logit_shift,
            update_mult=layer.update_mult,
            update_shift=layer.update_shift,
        )
        gen.values.update(R=readout, readout_layer=gen.layer_index, logit_scale=layer.weight_scale)
        gen.call("TESS_CALL_READOUT", 0, f"{c}_step({gen.current}, learn, label)")
        gen.buffer(f"{layer.name}.w", f"{c}_w", len(readout["weights"]), 1)
        gen.buffer(f"{layer.name}.b", f"{c}_b", classes, 4)
        if layer.learn:
            gen.buffer(f"{layer.name}.g", f"{c}_g", len(readout["weights"]), 4)
            gen.buffer(f"{layer.name}.gb", f"{c}_gb", classes, 4)
        # The network's output: this step's logits and their sum over the sample.
        gen.buffer("logits", "tess_step_logits", classes, 4)
        gen.buffer("logit_sum", "tess_logit_sum", classes, 4)
        gen.at_least("max_neurons", classes)  # it sums its logits in tess_acc
        gen.at_least("max_mask_words", (layer.in_size + 31) // 32)  # its spike input, packed 32 a word
        return readout

    def buffer_names(self, layer):
        learned = ([f"{layer.name}.g", f"{layer.name}.gb"], [f"{layer.name}.w", f"{layer.name}.b"])
        return (["logits", "logit_sum"], *(learned if layer.learn else ([], [])))

    def state_bytes(self, layer):
        return super().state_bytes(layer) + (4 * layer.num_classes if layer.learn else 0)  # + int32 biases


KIND = ReadoutKind()
