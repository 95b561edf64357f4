"""The int8 TFLite-Micro model: one invocation = one time step.

The spiking network's state is passed explicitly: for every spiking layer
the model takes the membrane ``u[t-1]`` and spikes ``o[t-1]`` as inputs and
returns ``u[t]`` and ``o[t]`` as outputs beside the step's logits. The
caller zeroes the states before a sample and feeds each step's outputs back
as the next step's inputs (requantised when an output's scale differs from
the input's), and sums the logits over T. Explicit state tensors need only
builtins every TFLite-Micro port has (no resource variables, no
VAR_HANDLE/ASSIGN_VARIABLE), and a sample's reset is just zeroes.

The graph uses CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED, ADD, SUB and
MUL (the spike is ``relu6(K (u - v_th)) / 6`` with K = 1000, which the
converter fuses into one MUL with a RELU6 activation: a step at the int8
resolution of ``u``), all int8, quantised after training by
TensorFlow's own converter from a representative set of (input, state)
pairs recorded while the float network runs on training samples.
"""

import warnings

import numpy as np

from tess_keras.export import layers as layer_kinds
from tess_keras.export.spec import ExportError
from tess_keras.logs import native_output_quieted

INPUT_NAME = "a_input"
TFLM_BUILTINS = {
    "CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "LOGISTIC",
    "QUANTIZE", "DEQUANTIZE", "DEPTHWISE_CONV_2D", "RELU", "RELU6", "RELU_0_TO_1", "RELU_N1_TO_1",
}
ARENA_BYTES = 512 * 1024


class StepGraph:
    """The float network as a function of one time step with explicit state.

    Each layer's part of the step comes from its kind (``export/layers/``); a kind with
    a state shape (the LIF layers) carries its membrane ``u`` and spikes ``o``.

    Args:
        model: a ``SpikingSequential``.

    Raises:
        ExportError: naming a layer the on-device engine does not support.
    """

    def __init__(self, model):
        self.model = model
        self.plan = []
        self.state_shapes = []
        for block in model.blocks:
            kind = layer_kinds.for_block(block)
            shape = kind.tflm_state_shape(block)
            if shape is not None:
                self.state_shapes.append(shape)
            self.plan.append((kind, block, kind.tflm_constants(block), shape is not None))
        self.input_shape = tuple(int(s) for s in model.step_input_shapes[model.blocks[0].name][1:])
        self.num_classes = int(model.readout.units)

    def state_names(self):
        """Names of the state tensors in input order (sorted: the converter orders inputs by name)."""
        names = []
        for index in range(len(self.state_shapes)):
            names += [f"s{index:02d}_u", f"s{index:02d}_v"]
        return names

    def __call__(self, x, *states):
        h = x
        out = {}
        index = 0
        for kind, block, constants, stateful in self.plan:
            if stateful:
                h, (u, o) = kind.tflm_step(block, constants, h, (states[2 * index], states[2 * index + 1]))
                out[f"s{index:02d}_u"], out[f"s{index:02d}_v"] = u, o
                index += 1
            else:
                h, _ = kind.tflm_step(block, constants, h, None)
        out["logits"] = h  # the last block is the readout (SpikingSequential's contract)
        return out

    def zero_states(self, batch):
        zeros = []
        for shape in self.state_shapes:
            zeros += [np.zeros((batch,) + shape, np.float32)] * 2
        return zeros

    def run_float(self, x_steps):
        """Float run over [batch, T, ...]: (logits_sum, per-step (x, states) inputs)."""
        import tensorflow as tf

        batch, steps = x_steps.shape[:2]
        states = self.zero_states(batch)
        total = np.zeros((batch, self.num_classes), np.float32)
        records = []
        for t in range(steps):
            x_t = x_steps[:, t].astype(np.float32)
            records.append([x_t] + [s.copy() for s in states])
            out = self(tf.constant(x_t), *[tf.constant(s) for s in states])
            total += out["logits"].numpy()
            states = [out[name].numpy() for name in self.state_names()]
        return total, records


def representative_inputs(graph, x_steps, limit=200):
    """(input, state) tuples of the float network on training samples.

    Raises:
        ExportError: when the set is empty or its samples do not match the model.
    """
    x_steps = np.asarray(x_steps)
    if x_steps.size == 0 or len(x_steps) == 0:
        raise ExportError(
            "the representative set is empty: int8 quantisation needs training samples to calibrate. "
            "Check that the run's dataset has training data."
        )
    if tuple(x_steps.shape[2:]) != graph.input_shape:
        raise ExportError(
            f"the representative set's samples have shape {tuple(x_steps.shape[2:])} per step but the model "
            f"takes {graph.input_shape}; export with the dataset (and --time-steps) the run was trained on."
        )
    _, records = graph.run_float(x_steps[:limit])
    names = [INPUT_NAME] + graph.state_names()
    samples = []
    for step in records:
        for b in range(len(step[0])):
            samples.append({name: a[b : b + 1] for name, a in zip(names, step)})
    return samples


def convert(graph, representative):
    """Post-training int8 quantisation with TensorFlow's converter; returns the flatbuffer."""
    import tensorflow as tf

    specs = [tf.TensorSpec((1,) + graph.input_shape, tf.float32, name=INPUT_NAME)]
    for name, shape in zip(graph.state_names(), [s for s in graph.state_shapes for _ in (0, 1)]):
        specs.append(tf.TensorSpec((1,) + shape, tf.float32, name=name))
    function = tf.function(graph.__call__, input_signature=specs)
    concrete = function.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], graph.model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The converter's own calibrator still runs tf.lite.Interpreter, which
        # warns that it is deprecated; nothing a user of this function can change.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated", category=UserWarning)
        with native_output_quieted():  # the converter prints "fully_quantize: 0, ..." from C++
            return converter.convert()


def _read_flatbuffer(model_bytes):
    """The .tflite flatbuffer as TFLite's own schema objects (no interpreter needed)."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))


def model_ops(model_bytes):
    """Builtin operator names used by a .tflite flatbuffer."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = _read_flatbuffer(model_bytes)
    return {
        flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for subgraph in model.subgraphs for op in subgraph.operators
    }


def _io_order(model_bytes):
    """name -> position among the subgraph's inputs and outputs.

    The converter orders a subgraph's tensors as it likes; the signature keeps
    the names we gave them, so positions are looked up through it.
    """
    model = _read_flatbuffer(model_bytes)
    signature = model.signatureDefs[0]
    subgraph = model.subgraphs[signature.subgraphIndex]
    inputs, outputs = list(subgraph.inputs), list(subgraph.outputs)
    in_pos = {entry.name.decode(): inputs.index(entry.tensorIndex) for entry in signature.inputs}
    out_pos = {entry.name.decode(): outputs.index(entry.tensorIndex) for entry in signature.outputs}
    return in_pos, out_pos


def _quantize(values, details):
    q = details["quantization_parameters"]
    scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
    return np.clip(np.round(values / scale) + zero, -128, 127).astype(np.int8)


def _dequantize(values, details):
    q = details["quantization_parameters"]
    return (values.astype(np.float32) - int(q["zero_points"][0])) * float(q["scales"][0])


class TFLMRunner:
    """Runs the int8 model step by step in the TFLite-Micro interpreter.

    Args:
        model_bytes: the .tflite flatbuffer.
        graph: the ``StepGraph`` it was converted from (state names and shapes).
    """

    def __init__(self, model_bytes, graph):
        from tflite_micro.python.tflite_micro import runtime

        self.graph = graph
        self.interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=ARENA_BYTES)
        self.in_pos, self.out_pos = _io_order(model_bytes)
        self.in_details = {n: self.interpreter.get_input_details(p) for n, p in self.in_pos.items()}
        self.out_details = {n: self.interpreter.get_output_details(p) for n, p in self.out_pos.items()}
        missing = sorted(set([INPUT_NAME] + graph.state_names()) - set(self.in_pos) | set(graph.state_names() + ["logits"]) - set(self.out_pos))
        if missing:
            raise ExportError(f"internal: the TFLite model lacks the tensors {', '.join(missing)}.")

    def run_sample(self, x_steps):
        """x_steps: float [T, *input_shape]. Returns the summed float logits."""
        names = self.graph.state_names()
        states = {n: z[0] for n, z in zip(names, self.graph.zero_states(1))}
        total = np.zeros(self.graph.num_classes, np.float32)
        for x_t in x_steps:
            self.interpreter.set_input(_quantize(x_t[None], self.in_details[INPUT_NAME]), self.in_pos[INPUT_NAME])
            for name in names:
                self.interpreter.set_input(_quantize(states[name][None], self.in_details[name]), self.in_pos[name])
            self.interpreter.invoke()
            logits = self.interpreter.get_output(self.out_pos["logits"])
            total += _dequantize(logits, self.out_details["logits"])[0]
            for name in names:
                states[name] = _dequantize(self.interpreter.get_output(self.out_pos[name]), self.out_details[name])[0]
        return total

    def predict(self, x_steps):
        return np.array([int(np.argmax(self.run_sample(sample))) for sample in x_steps])


def check_builtins(model_bytes):
    ops = model_ops(model_bytes)
    unsupported = sorted(ops - TFLM_BUILTINS)
    if unsupported:
        raise ExportError(f"the TFLite model uses operators TFLite-Micro does not provide here: {', '.join(unsupported)}.")
    return sorted(ops)


def write_model_data(model_bytes, out_dir):
    """OUT_DIR/model.tflite plus model_data.h/.cc (16-byte aligned C array)."""
    from pathlib import Path

    out_dir = Path(out_dir)
    (out_dir / "model.tflite").write_bytes(model_bytes)
    (out_dir / "model_data.h").write_text(
        "// model_data.h: generated by `tess export`. The int8 TFLite-Micro model (one invocation = one time\n"
        "// step; membrane u and spikes o of every spiking layer are explicit input/output tensors).\n"
        "#ifndef TESS_MODEL_DATA_H\n#define TESS_MODEL_DATA_H\n\n#include <stdint.h>\n\n"
        f"#define TESS_MODEL_DATA_SIZE {len(model_bytes)}\n"
        "extern const uint8_t tess_model_data[TESS_MODEL_DATA_SIZE];\n\n#endif  // TESS_MODEL_DATA_H\n"
    )
    values = np.frombuffer(model_bytes, np.uint8)
    lines = [", ".join(f"0x{v:02x}" for v in values[i : i + 16]) for i in range(0, len(values), 16)]
    (out_dir / "model_data.cc").write_text(
        '// model_data.cc: generated by `tess export`.\n#include "model_data.h"\n\n'
        "alignas(16) const uint8_t tess_model_data[TESS_MODEL_DATA_SIZE] = {\n"
        + ",\n".join("    " + line for line in lines)
        + "\n};\n"
    )
