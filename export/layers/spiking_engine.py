"""What the generated engine holds of a LIF layer (conv or dense): its template values,
its calls of ``tess_step`` (the step, and the TESS learning after it or after the
max-pool whose output its LSG reads), its named buffers and its share of the
engine's scratch sizes. ``SpikingKind`` inherits it; conv and dense add their
geometry (``engine_geometry``, ``engine_taps``, ``engine_mask_words``)."""

import abc

import numpy as np

from tess_keras.export.layers import maxpool
from tess_keras.export.layers.fixed_point import U_FRAC


class SpikingEngine(abc.ABC):
    """The generated-engine part of ``spiking.SpikingKind`` (``LayerKind.engine_context``)."""

    @abc.abstractmethod
    def engine_geometry(self, layer):
        """The template values of the layer's geometry ({} for dense)."""

    @abc.abstractmethod
    def engine_taps(self, layer):
        """Inputs one output's weight row multiplies."""

    @abc.abstractmethod
    def engine_mask_words(self, layer):
        """Words of the spike bit masks the fast forward packs the layer's input into (32 channels a word)."""

    def engine_defaults(self, spec):
        return dict(spiking=[], spiking_layers=[], any_spiking_learn=False, any_post_trace=False,
                    max_learn_neurons=1, max_lsg=1, max_channels=1, packed_weights=0)

    def engine_lsg_cells(self, layer):
        """Template values of a learning layer's LSG cells: the map's size, the pool, L."""
        shape = tuple(layer.lsg_shape)
        height, width, channels = shape if len(shape) == 3 else (1, 1, shape[0])
        return dict(LH=height, LW=width, LC=channels, LN=height * width * channels, KK=layer.lsg_pool**2,
                    lsg_norm=layer.lsg_norm)

    @staticmethod
    def engine_lsg_bits(sign):
        """Pack B's signs (+1 -> bit 1, -1 -> bit 0; column 0 is zero by construction): (rows, row bytes)."""
        classes, n = sign.shape
        row_bytes = (n + 7) // 8
        bits = np.zeros((classes, row_bytes), np.uint8)
        for k in range(n):
            bits[:, k // 8] |= ((sign[:, k] > 0).astype(np.uint8) << (k % 8)).astype(np.uint8)
        return bits.tolist(), row_bytes

    def engine_context(self, layer, gen):
        c = self.c_symbol(layer)
        ctx = dict(
            name=layer.name,
            c=c,
            summary=self.describe(layer),
            kind=layer.kind,
            analog=layer.analog_input,
            in_t=gen.current_type,
            learn=layer.learn,
            weights=layer.weights.ravel().tolist(),
            cur_mult=layer.current_mult,
            cur_shift=layer.current_shift,
            threshold=layer.threshold,
            reset_amount=layer.threshold if layer.reset_amount is None else layer.reset_amount,
            gamma=layer.gamma,
            psi_scale=layer.psi_scale,
            N=layer.num_neurons,
            NIN=layer.num_inputs,
            CO=layer.out_channels,
            alpha_post=layer.alpha_post if layer.learn else 0,
            **self.engine_geometry(layer),
        )
        block_index = -1  # the pool whose output the LSG reads (lsg_source "block")
        if layer.learn:
            bits, row_bytes = self.engine_lsg_bits(layer.lsg_sign)
            block = None
            if layer.lsg_from:
                block_index = gen.ordinal(layer.lsg_from)
                block = maxpool.KIND.template_values(gen.layer(layer.lsg_from), block_index)
            ctx.update(
                block=block,
                lsg_after=f"{layer.lsg_from} (LSG on the block output)" if block else "its own step",
                lambda_pre=layer.lambda_pre,
                lambda_post=layer.lambda_post,
                alpha_pre=layer.alpha_pre,
                trace_frac=layer.trace_frac,
                trace_format=f"Q{15 - layer.trace_frac}.{layer.trace_frac} of one {'input LSB' if layer.analog_input else 'spike'}",
                grad_shift=layer.grad_shift,
                lsg_size=layer.lsg_size,
                lsg_pool=layer.lsg_pool,
                lsg_bits=bits,
                lsg_row_bytes=row_bytes,
                lsg_mult=layer.lsg_mult,
                lsg_shift=layer.lsg_shift,
                **self.engine_lsg_cells(layer),
                update_mult=layer.update_mult,
                update_shift=layer.update_shift,
            )
        index = gen.append("spiking", ctx)
        gen.values["spiking_layers"].append(gen.layer_index)
        gen.call("TESS_CALL_SPIKING", index, f"{c}_step({gen.current}, learn, label)")
        if layer.learn:  # on the block output it runs once the pool has its output
            gen.call("TESS_CALL_LEARN", index, f"if (learn) {c}_learn({gen.current}, label)", block=block_index,
                     after=layer.lsg_from)
        n, weights = layer.num_neurons, len(ctx["weights"])
        gen.buffer(f"{layer.name}.u", f"{c}_u", n, 2)
        gen.buffer(f"{layer.name}.o", f"{c}_o", n, 1)
        gen.buffer(f"{layer.name}.w", f"{c}_w", weights, 1)
        if layer.learn:
            gen.buffer(f"{layer.name}.q", f"{c}_q", layer.num_inputs, 2)
            if layer.alpha_post:
                gen.buffer(f"{layer.name}.h", f"{c}_h", n, 2)
            gen.buffer(f"{layer.name}.g", f"{c}_g", weights, 2)  # int16 dW accumulators
        gen.values.setdefault("threshold_q", layer.threshold)  # the first spiking layer's, in the header
        gen.values.setdefault("v_th", layer.threshold / (1 << U_FRAC))
        gen.at_least("max_neurons", n)
        if layer.analog_input:  # int16 values of the weights as the fast forward packs them: co * (taps + 1)
            taps = self.engine_taps(layer)
            gen.at_least("packed_weights", layer.out_channels * (taps + 1) if (taps + 1) // 2 <= 256 else 0)
        else:
            gen.at_least("max_mask_words", self.engine_mask_words(layer))
        if layer.learn:
            gen.values["any_spiking_learn"] = True
            if layer.alpha_post:
                gen.values["any_post_trace"] = True
            gen.at_least("max_learn_neurons", n)
            gen.at_least("max_lsg", layer.lsg_size)
            gen.at_least("max_channels", layer.out_channels)
        gen.output(f"{c}_o", ("TESS_SOURCE_SPIKES", index), "uint8_t")
        return ctx

    def buffer_names(self, layer):
        step = [f"{layer.name}.u", f"{layer.name}.o"]
        if not layer.learn:
            return step, [], []
        step += [f"{layer.name}.q"] + ([f"{layer.name}.h"] if layer.alpha_post else [])
        return step, [f"{layer.name}.g"], [f"{layer.name}.w"]
