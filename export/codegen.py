"""Render the C++ engine, the host harness and the demo data from Jinja2 templates."""

import re
import shutil
from pathlib import Path

import jinja2
import numpy as np

from tess_keras.export import layers
from tess_keras.export.spec import FlattenSpec, PoolSpec, ReadoutSpec, SpikingSpec, U_FRAC

TEMPLATES = Path(__file__).parent / "templates"
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "firmware" / "runtime"
RUNTIME_FILES = (
    "tess_runtime.h", "tess_simd.h", "tess_kernels.h", "tess_fast.h", "tess_model.h",
    "tess_spiking.cc", "tess_forward_fast.cc", "tess_fire_fast.cc", "tess_learn.cc", "tess_dw.cc", "tess_dw_fast.cc", "tess_pool.cc", "tess_readout.cc",
    "tess_update.cc", "tess_update_fast.cc", "tess_model.cc", "tess_state.cc",
)
RUNTIME_SOURCES = tuple(name for name in RUNTIME_FILES if name.endswith(".cc"))
ENGINE_FILES = ("tess_engine.h", "tess_engine.cc")


def runtime_dir():
    """The fixed runtime (firmware/runtime of the repository checkout)."""
    if not (RUNTIME_DIR / RUNTIME_FILES[0]).exists():
        from tess_keras.export.spec import ExportError

        raise ExportError(f"the engine runtime {RUNTIME_DIR / RUNTIME_FILES[0]} is missing; run from a tess-keras checkout.")
    return RUNTIME_DIR


def c_array(values, per_line=16):
    values = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(values[i : i + per_line]) for i in range(0, len(values), per_line)]
    return ",\n".join("    " + line for line in lines)


def c_name(name):
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return name if not name[0].isdigit() else "l_" + name


def _environment():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["carray"] = c_array
    return env


def _lsg_bits(sign):
    """Pack B's signs (+1 -> bit 1, -1 -> bit 0; column 0 is zero by construction)."""
    classes, n = sign.shape
    row_bytes = (n + 7) // 8
    bits = np.zeros((classes, row_bytes), np.uint8)
    for k in range(n):
        bits[:, k // 8] |= ((sign[:, k] > 0).astype(np.uint8) << (k % 8)).astype(np.uint8)
    return bits.tolist(), row_bytes


def layer_summary(layer):
    """One line naming the layer, its kind, shapes and whether it learns (each kind's ``describe``)."""
    return layers.for_spec(layer).describe(layer)


def _pool_context(layer, index=0):
    """Template values of one ``PoolSpec`` (``index``: its place among the pools)."""
    h, w, ch = layer.in_shape
    oh, ow, _ = layer.out_shape
    return dict(
        name=layer.name, c=c_name(layer.name), index=index, summary=layer_summary(layer), N=int(np.prod(layer.out_shape)),
        H=h, W=w, C=ch, OH=oh, OW=ow, PH=layer.pool[0], PW=layer.pool[1], SH=layer.stride[0], SW=layer.stride[1],
        PT=layer.pad[0], PL=layer.pad[1],
    )


def _lsg_cells(layer):
    """Template values of a learning layer's LSG cells: the map's size and, for conv
    layers, the first/last cell row (column) of every map row (column) and each
    cell's weight L / area (adaptive windows, possibly overlapping)."""
    shape = tuple(layer.lsg_shape)
    height, width, channels = shape if len(shape) == 3 else (1, 1, shape[0])
    values = dict(LH=height, LW=width, LC=channels, LN=height * width * channels, KK=layer.lsg_pool**2,
                  lsg_norm=layer.lsg_norm)
    if layer.kind == "conv":
        def spans(windows, size):
            inside = [[i for i, (a, b) in enumerate(windows) if a <= y < b] for y in range(size)]
            return [min(cells) for cells in inside], [max(cells) for cells in inside]

        values["rlo"], values["rhi"] = spans(layer.lsg_rows, height)
        values["clo"], values["chi"] = spans(layer.lsg_cols, width)
        values["cell_weight"] = [int(v) for v in np.asarray(layer.lsg_weight).ravel()]
    return values


def engine_context(spec, source="a Keras model"):
    """Everything the engine templates read, computed from an ``EngineSpec``."""
    spiking, pools, calls, call_table, buffers = [], [], [], [], []
    pool_list = [layer for layer in spec.layers if isinstance(layer, PoolSpec)]
    pool_specs = {layer.name: (i, layer) for i, layer in enumerate(pool_list)}
    waiting = {}  # pool name -> the learn call that must follow it (LSG on the block output)
    current = "input"
    current_type = "int8_t"
    source = ("TESS_SOURCE_INPUT", 0)

    def call(op, index, text, layer_index, block=-1):
        calls.append(text)
        return dict(op=op, index=index, source=source[0], source_index=source[1], block=block, layer=layer_index,
                    text=text)

    for layer_index, layer in enumerate(spec.layers):
        if isinstance(layer, SpikingSpec):
            c = c_name(layer.name)
            ctx = dict(
                name=layer.name,
                c=c,
                summary=layer_summary(layer),
                kind=layer.kind,
                analog=layer.analog_input,
                in_t=current_type,
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
            )
            if layer.kind == "conv":
                h, w, ci = layer.in_shape
                oh, ow, co = layer.out_shape
                ctx.update(H=h, W=w, CI=ci, OH=oh, OW=ow, K=layer.kernel_size, S=layer.stride, PT=layer.pad[0], PL=layer.pad[1])
            if layer.learn:
                bits, row_bytes = _lsg_bits(layer.lsg_sign)
                block = _pool_context(pool_specs[layer.lsg_from][1], pool_specs[layer.lsg_from][0]) if layer.lsg_from else None
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
                    **_lsg_cells(layer),
                    update_mult=layer.update_mult,
                    update_shift=layer.update_shift,
                )
            index = len(spiking)
            spiking.append(ctx)
            call_table.append(call("TESS_CALL_SPIKING", index, f"{c}_step({current}, learn, label)", layer_index))
            if layer.learn:
                learn_call = call("TESS_CALL_LEARN", index, f"if (learn) {c}_learn({current}, label)", layer_index,
                                  pool_specs[layer.lsg_from][0] if layer.lsg_from else -1)
                if layer.lsg_from:
                    calls.pop()
                    waiting[layer.lsg_from] = learn_call
                else:
                    call_table.append(learn_call)
            buffers += [
                dict(name=f"{layer.name}.u", symbol=f"{c}_u", count=ctx["N"], bytes=2),
                dict(name=f"{layer.name}.o", symbol=f"{c}_o", count=ctx["N"], bytes=1),
                dict(name=f"{layer.name}.w", symbol=f"{c}_w", count=len(ctx["weights"]), bytes=1),
            ]
            if layer.learn:
                buffers.append(dict(name=f"{layer.name}.q", symbol=f"{c}_q", count=ctx["NIN"], bytes=2))
                if layer.alpha_post:
                    buffers.append(dict(name=f"{layer.name}.h", symbol=f"{c}_h", count=ctx["N"], bytes=2))
                buffers.append(dict(name=f"{layer.name}.g", symbol=f"{c}_g", count=len(ctx["weights"]), bytes=4))
            current, current_type, source = f"{c}_o", "uint8_t", ("TESS_SOURCE_SPIKES", index)
        elif isinstance(layer, PoolSpec):
            pool = _pool_context(layer, len(pools))
            pools.append(pool)
            call_table.append(call("TESS_CALL_POOL", pool["index"], f"{pool['c']}_step({current})", layer_index))
            if layer.name in waiting:
                learn_call = waiting.pop(layer.name)
                calls.append(learn_call["text"])
                call_table.append(learn_call)
            current, source = f"{pool['c']}_out", ("TESS_SOURCE_POOL", pool["index"])
        elif isinstance(layer, FlattenSpec):
            continue
        elif isinstance(layer, ReadoutSpec):
            c = c_name(layer.name)
            readout = dict(
                c=c,
                summary=layer_summary(layer),
                learn=layer.learn,
                NIN=layer.in_size,
                weights=layer.weights.ravel().tolist(),
                bias=layer.bias,
                logit_mult=layer.logit_mult,
                logit_shift=layer.logit_shift,
                update_mult=layer.update_mult,
                update_shift=layer.update_shift,
            )
            call_table.append(call("TESS_CALL_READOUT", 0, f"{c}_step({current}, learn, label)", layer_index))
            readout_layer = layer_index
            buffers += [
                dict(name=f"{layer.name}.w", symbol=f"{c}_w", count=len(readout["weights"]), bytes=1),
                dict(name=f"{layer.name}.b", symbol=f"{c}_b", count=spec.num_classes, bytes=4),
            ]
            if layer.learn:
                buffers += [
                    dict(name=f"{layer.name}.g", symbol=f"{c}_g", count=len(readout["weights"]), bytes=4),
                    dict(name=f"{layer.name}.gb", symbol=f"{c}_gb", count=spec.num_classes, bytes=4),
                ]
    if waiting:
        from tess_keras.export.spec import ExportError

        raise ExportError(f"internal: the LSG of a layer reads pool {', '.join(waiting)}, which does not follow it.")
    buffers += [
        dict(name="logits", symbol="tess_step_logits", count=spec.num_classes, bytes=4),
        dict(name="logit_sum", symbol="tess_logit_sum", count=spec.num_classes, bytes=4),
    ]
    learning = [s for s in spiking if s["learn"]]
    dims = list(zip(("HEIGHT", "WIDTH", "CHANNELS"), spec.input_shape)) if len(spec.input_shape) == 3 else []
    first = spec.spiking[0]
    return dict(
        source=source,
        spiking=spiking,
        pools=pools,
        R=readout,
        calls=calls,
        call_table=call_table,
        spiking_layers=[i for i, layer in enumerate(spec.layers) if isinstance(layer, SpikingSpec)],
        readout_layer=readout_layer,
        buffers=buffers,
        num_classes=spec.num_classes,
        time_steps=spec.time_steps,
        input_size=spec.input_size,
        input_dims=dims,
        input_scale=spec.input_scale,
        logit_scale=spec.readout.weight_scale,
        seed=spec.seed,
        t_l=spec.t_l,
        lsg_source=spec.lsg_source,
        learning_rate=spec.learning_rate,
        learn_names=", ".join(layer.name for layer in spec.learnable),
        learnable_weights=sum(int(layer.weights.size) for layer in spec.learnable),
        threshold_q=first.threshold,
        v_th=first.threshold / (1 << U_FRAC),
        layer_lines=[layer_summary(layer) for layer in spec.layers],
        any_learn=bool(spec.learnable),
        any_spiking_learn=bool(learning),
        any_post_trace=any(s["alpha_post"] for s in learning),
        any_conv_learn=any(s["kind"] == "conv" for s in learning),
        max_neurons=max([s["N"] for s in spiking] + [spec.num_classes]),
        max_learn_neurons=max([s["N"] for s in learning], default=1),
        max_lsg=max([s["lsg_size"] for s in learning], default=1),
        max_channels=max([s["CO"] for s in learning], default=1),
        max_mask_words=max([_mask_words(s) for s in spiking if not s["analog"]] + [(readout["NIN"] + 31) // 32]),
        packed_weights=max([_packed_size(s) for s in spiking if s["analog"]], default=0),
    )


def _packed_size(layer):
    """int16 values of an int8-input layer's weights as the fast forward packs them: co * (taps + 1)."""
    taps = layer["K"] ** 2 * layer["CI"] if layer["kind"] == "conv" else layer["NIN"]
    return layer["CO"] * (taps + 1) if (taps + 1) // 2 <= 256 else 0


def _mask_words(layer):
    """Words of the spike bit masks the fast forward packs a layer's input into (32 channels a word)."""
    if layer["kind"] == "conv":
        return layer["H"] * layer["W"] * ((layer["CI"] + 31) // 32)
    return (layer["NIN"] + 31) // 32


def buffer_names(spec):
    """(step, grad, weight) buffer names in the order the harness writes them."""
    step, grad, weight = [], [], []
    for layer in spec.spiking:
        step += [f"{layer.name}.u", f"{layer.name}.o"]
        if layer.learn:
            step.append(f"{layer.name}.q")
            if layer.alpha_post:
                step.append(f"{layer.name}.h")
    step += ["logits", "logit_sum"]
    for layer in spec.learnable:
        grad.append(f"{layer.name}.g")
        weight.append(f"{layer.name}.w")
        if isinstance(layer, ReadoutSpec):
            grad.append(f"{layer.name}.gb")
            weight.append(f"{layer.name}.b")
    return step, grad, weight


def write_engine(spec, out_dir, source="a Keras model"):
    """Write tess_engine.h/.cc and the runtime header into ``out_dir``."""
    out_dir = Path(out_dir)
    env = _environment()
    context = engine_context(spec, source)
    from tess_keras.export.engine_extras import extras_context

    context.update(extras_context(spec, context["calls"]))
    for name in ENGINE_FILES:
        (out_dir / name).write_text(env.get_template(name + ".j2").render(**context))
    for name in RUNTIME_FILES:  # the fixed runtime travels with the engine
        shutil.copyfile(runtime_dir() / name, out_dir / name)
    return [out_dir / n for n in ENGINE_FILES + RUNTIME_FILES]


def write_harness(spec, out_dir):
    step, grad, weight = buffer_names(spec)
    path = Path(out_dir) / "host_harness.cc"
    path.write_text(_environment().get_template("host_harness.cc.j2").render(step_names=step, grad_names=grad, weight_names=weight))
    return path
