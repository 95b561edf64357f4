"""``tess export --target nir``: a ``SpikingSequential`` as a NIR graph (``model.nir``).

Every mapping is exact (float32):

* ``SpikingConv2D``/``SpikingDense`` -> ``Conv2d``/``Linear`` with the
  weight-standardised kernel folded in (OIHW / [out, in] layout). TF's
  asymmetric ``same`` padding of strided convolutions (one more row at the
  bottom) becomes symmetric padding of a kernel grown by zero rows at the top.
* The neuron, by its ``reset``:
  ``"subtract"`` (ours, before the leak) -> ``LI`` + ``Threshold`` + a recurrent
  ``Scale`` of ``-gamma * v_th`` into the ``LI``;
  ``"subtract_after_leak"`` -> the same with ``Scale(-v_th)``;
  ``"zero"`` -> ``LIF`` with ``v_reset = 0``.
  The ``LI`` has ``tau = dt / (1 - gamma)`` and ``r = 1 / (1 - gamma)``, so the
  Euler step is ``v = gamma v + I``. NIR fires on ``>``, we on ``>=``: the
  threshold written is the float32 just below ``v_th``, the same test in float32.
* ``MaxPooling2D`` on binary spikes -> ``SumPool2d`` + ``Threshold(0.5)``;
  ``AveragePooling2D`` -> ``AvgPool2d``; ``GlobalAveragePooling2D`` ->
  ``AvgPool2d`` over the map + ``Flatten``.
* ``Flatten`` (HWC order) -> ``Flatten`` of ``[C, H, W]`` (CHW order), with the
  next layer's weight columns permuted to match.
* ``Readout`` -> ``Affine``; the prediction is argmax of the Output summed over
  time.

A layer with no NIR form is an ``ExportError`` naming it.
"""

import numpy as np

from tess_keras.export.nir_reference import DEFAULT_DT

F32 = np.float32


class NIRExportError(ValueError):
    """The model has a layer or setting that NIR cannot express."""


def tf_same_padding(size, kernel, stride):
    """(top, bottom) zero padding of TF's ``same`` for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def threshold_below(v_th):
    """The float32 just below ``v_th``: ``x > it`` iff ``x >= v_th`` in float32."""
    return np.nextafter(F32(v_th), F32(-np.inf), dtype=F32)


def _chw_permutation(shape):
    """Index map: position i of the CHW flattening holds HWC element perm[i]."""
    h, w, c = shape
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


class _Builder:
    def __init__(self, dt):
        self.nodes, self.edges, self.last, self.dt = {}, [], "input", dt

    def add(self, name, node, source=None):
        self.nodes[name] = node
        self.edges.append((source or self.last, name))
        self.last = name


def _neuron(builder, name, layer, shape_chw):
    """Append the neuron of ``layer`` after its synapse node."""
    import nir

    gamma, v_th = float(layer.gamma), float(layer.v_th)
    if not 0.0 <= gamma < 1.0:
        raise NIRExportError(f"layer {name}: gamma={gamma} is outside [0, 1); NIR's leaky neurons need a decay below 1.")
    full = lambda value: np.full(shape_chw, value, np.float64)  # noqa: E731
    tau, r = full(builder.dt / (1.0 - gamma)), full(1.0 / (1.0 - gamma))
    synapse = builder.last
    if layer.reset == "zero":
        builder.add(f"{name}.lif", nir.LIF(tau=tau, r=r, v_leak=full(0.0), v_threshold=full(threshold_below(v_th)),
                                           v_reset=full(0.0)))
        return
    builder.add(f"{name}.li", nir.LI(tau=tau, r=r, v_leak=full(0.0)), synapse)
    builder.add(f"{name}.spike", nir.Threshold(threshold=np.full(shape_chw, threshold_below(v_th), F32)))
    reset = gamma * v_th if layer.reset == "subtract" else v_th
    builder.nodes[f"{name}.reset"] = nir.Scale(scale=np.full(shape_chw, -reset, F32))
    builder.edges += [(f"{name}.spike", f"{name}.reset"), (f"{name}.reset", f"{name}.li")]


def model_to_nir(model, dt=DEFAULT_DT):
    """The NIR graph of a built ``SpikingSequential``.

    Args:
        model: the network (built; per-step input ``[H, W, C]`` or ``[N]``).
        dt: the Euler step the time constants are written for.

    Returns:
        ``nir.NIRGraph`` with nodes ``input`` ... ``output``.

    Raises:
        NIRExportError: a layer NIR cannot express exactly.
    """
    import keras
    import nir

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense

    blocks = model.blocks
    shape = tuple(int(s) for s in model.step_input_shapes[blocks[0].name][1:])
    builder = _Builder(dt)
    chw = lambda s: (s[2], s[0], s[1]) if len(s) == 3 else s  # noqa: E731
    builder.nodes["input"] = nir.Input(input_type={"input": np.array(chw(shape))})
    spikes, permutation = False, None  # binary input? / CHW flatten pending
    for block in blocks:
        name, kind = block.name, type(block).__name__
        if isinstance(block, SpikingConv2D):
            kernel = np.asarray(keras.ops.convert_to_numpy(block.effective_kernel()), np.float32)
            kernel = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            padding, (h, w, _) = [0, 0], shape
            if block.padding == "same":
                for axis, size in ((0, h), (1, w)):
                    top, bottom = tf_same_padding(size, block.kernel_size, block.strides)
                    if bottom > top:  # grow the kernel at the start of this axis
                        grow = [(0, 0)] * 4
                        grow[2 + axis] = (bottom - top, 0)
                        kernel = np.pad(kernel, grow)
                    padding[axis] = bottom
            out_shape = block.compute_output_shape((None,) + shape)[1:]
            builder.add(name, nir.Conv2d(input_shape=(h, w), weight=kernel, stride=block.strides,
                                         padding=tuple(padding), dilation=1, groups=1,
                                         bias=np.zeros(block.filters, np.float32)))
            shape = tuple(int(s) for s in out_shape)
            _neuron(builder, name, block, chw(shape))
            spikes = True
        elif isinstance(block, (SpikingDense, Readout)):
            if len(shape) != 1:
                raise NIRExportError(f"layer {name} ({kind}) needs a flat input; add a Flatten before it.")
            if isinstance(block, SpikingDense):
                kernel = np.asarray(keras.ops.convert_to_numpy(block.effective_kernel()), np.float32)
            else:
                kernel = np.asarray(keras.ops.convert_to_numpy(block.kernel), np.float32)
            if permutation is not None:
                kernel = kernel[permutation]
                permutation = None
            weight = np.ascontiguousarray(kernel.T)
            if isinstance(block, SpikingDense):
                builder.add(name, nir.Linear(weight=weight))
                shape = (block.units,)
                _neuron(builder, name, block, shape)
                spikes = True
            else:
                if block.activation is not None and block.activation.__name__ != "linear":
                    raise NIRExportError(f"layer {name} (Readout) has an activation; NIR's Affine is linear.")
                bias = (np.asarray(keras.ops.convert_to_numpy(block.bias), np.float32) if block.use_bias
                        else np.zeros(block.units, np.float32))
                builder.add(name, nir.Affine(weight=weight, bias=bias))
                shape = (block.units,)
        elif isinstance(block, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            if len(shape) != 3:
                raise NIRExportError(f"layer {name} ({kind}) needs a [H, W, C] input, got {shape}.")
            (ph, pw), (sh, sw), (h, w, c) = block.pool_size, block.strides, shape
            if block.padding != "valid" and ((h - ph) % sh or (w - pw) % sw):
                raise NIRExportError(f"layer {name} ({kind}): padding='same' that pads has no NIR form; use 'valid'.")
            out_shape = ((h - ph) // sh + 1, (w - pw) // sw + 1, c)
            pool = dict(kernel_size=np.array([ph, pw]), stride=np.array([sh, sw]), padding=np.array([0, 0]))
            if isinstance(block, keras.layers.AveragePooling2D):
                builder.add(name, nir.AvgPool2d(**pool))
            else:
                if not spikes:
                    raise NIRExportError(
                        f"layer {name} (MaxPooling2D) pools analog values; NIR has no max-pool, and SumPool2d + "
                        "Threshold equals it on binary spikes only. Put the pool after a spiking layer."
                    )
                builder.add(f"{name}.sum", nir.SumPool2d(**pool))
                builder.add(name, nir.Threshold(threshold=np.full(chw(out_shape), 0.5, F32)))
            shape = out_shape
        elif isinstance(block, keras.layers.GlobalAveragePooling2D):
            h, w, c = shape
            builder.add(f"{name}.pool", nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                                       padding=np.array([0, 0])))
            builder.add(name, nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1))
            shape, spikes = (c,), False
        elif isinstance(block, keras.layers.Flatten):
            if len(shape) == 3:
                permutation = _chw_permutation(shape)
                builder.add(name, nir.Flatten(input_type={"input": np.array(chw(shape))}, start_dim=0, end_dim=-1))
            shape = (int(np.prod(shape)),)
        else:
            raise NIRExportError(
                f"layer {name} ({kind}) has no NIR form: the NIR export supports SpikingConv2D, SpikingDense, "
                "MaxPooling2D (after spiking layers), AveragePooling2D, GlobalAveragePooling2D, Flatten and Readout."
            )
        if isinstance(block, (keras.layers.AveragePooling2D,)):
            spikes = False
    builder.add("output", nir.Output(output_type={"output": np.array(shape)}))
    metadata = {"dt": float(dt), "source": "tess-keras",
                "prediction": "argmax over classes of the output summed over the time steps"}
    return nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=metadata)


def to_nir_layout(x):
    """``[N, T, H, W, C]`` frames -> ``[N, T, C, H, W]`` (flat inputs unchanged)."""
    x = np.asarray(x, np.float32)
    return x.transpose(0, 1, 4, 2, 3) if x.ndim == 5 else x


def test_inputs(splits, limit=None):
    """``(x, y)``: the test split exactly as the model sees it (``[N, T, ...]``
    float32, normalised, images repeated over T), first ``limit`` samples."""
    from tess_keras import data

    xs, ys = [], []
    for inputs, labels in data.make_tf_dataset(splits, "test", 128):
        xs.append(inputs.numpy())
        ys.append(labels.numpy())
        if limit and sum(len(b) for b in ys) >= limit:
            break
    if not xs:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]


def _check_out(out_dir):
    """Refuse an --out that holds anything but a previous NIR export."""
    from pathlib import Path

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NIRExportError(f"{out_dir} is a file; pass a directory as --out.")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ("model.nir", "report.json"))
        if foreign:
            raise NIRExportError(
                f"{out_dir} holds other files ({', '.join(foreign[:5])}); the NIR export writes model.nir and "
                "report.json only into a new directory or a previous NIR export. Choose another --out."
            )
    return out_dir


def export_nir(run_dir, out_dir, data_dir=None, evaluate=None, dt=DEFAULT_DT):
    """Write ``out_dir/model.nir`` and ``out_dir/report.json`` for a run.

    The report holds the measured agreement between the Keras model and the
    file run by ``nir_reference`` (NIR's semantics) on the test split.

    Args:
        run_dir: a ``tess train`` / ``tess import`` run directory.
        out_dir: directory to write (new, or a previous NIR export).
        data_dir: where datasets live (None: the run's).
        evaluate: test samples to compare on (None: all).
        dt: the Euler step written into the file.

    Returns:
        The report dict.

    Raises:
        NIRExportError: with one paragraph naming the problem and the fix.
    """
    import json
    import os
    import tempfile
    from pathlib import Path

    import nir

    import tess_keras.models  # noqa: F401  (registers the custom objects)
    import tess_keras.rules  # noqa: F401
    from tess_keras import data, training
    from tess_keras.export import nir_reference

    out_dir, run_dir = _check_out(out_dir), Path(run_dir)
    try:
        config = training.load_saved_config(run_dir)
    except training.ConfigError as error:
        raise NIRExportError(str(error)) from None
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise NIRExportError(f"{run_dir} has no model.keras; pass the directory `tess train --out` wrote.")
    from tess_keras.modelfile import ModelFileError, load_spiking_model

    try:
        model = load_spiking_model(model_path, f"Rewrite it with `tess train --resume {run_dir}`.")
    except ModelFileError as error:  # a corrupt or foreign file: say which
        raise NIRExportError(str(error)) from None
    graph = model_to_nir(model, dt)
    try:
        splits = data.load_dataset(config.dataset, data_dir or config.data_dir or None, config.time_steps or None,
                                   config.seed)
    except data.DatasetError as error:
        raise NIRExportError(f"cannot load the run's dataset {config.dataset!r}: {error}") from None
    x, y = test_inputs(splits, evaluate)
    keras_pred = np.concatenate([np.argmax(np.asarray(model(x[i : i + 128])), axis=-1)
                                 for i in range(0, len(x), 128)]) if len(x) else np.zeros(0, np.int64)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_file = Path(tmp) / "model.nir"
        nir.write(str(tmp_file), graph)
        written = nir.read(str(tmp_file))  # measure what the file says, not the object
        nir_pred = nir_reference.predict(written, to_nir_layout(x), dt=dt)
        os.replace(tmp_file, out_dir / "model.nir")
    agreement = float(np.mean(nir_pred == keras_pred)) if len(x) else 1.0
    report = {
        "file": str(out_dir / "model.nir"),
        "exact": True,
        "dt": dt,
        "nodes": {name: type(node).__name__ for name, node in graph.nodes.items()},
        "test_samples": int(len(x)),
        "keras_accuracy": float(np.mean(keras_pred == y)) if len(x) else None,
        "nir_accuracy": float(np.mean(nir_pred == y)) if len(x) else None,
        "prediction_agreement": agreement,
        "semantics": "export/nir_reference.py: forward Euler with dt, recurrent edges delayed one step, "
                     "prediction = argmax of the output summed over time",
    }
    if agreement < 1.0:
        report["exact"] = False
        report["note"] = ("every layer has an exact NIR form, but float32 rounding (a different order of the "
                          "membrane update's additions) flipped a spike in some samples")
    training.atomic_write(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    return report
