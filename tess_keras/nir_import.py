"""NIR graphs (snnTorch, Norse, Sinabs, tess-keras ...) as ``SpikingSequential`` models.

The graph must be a chain from its ``Input`` to its ``Output``:

* ``Conv2d``/``Linear``/``Affine`` (zero bias) followed by a neuron becomes a
  ``SpikingConv2D``/``SpikingDense`` (raw kernel, no weight standardisation).
  Neurons: ``LIF`` (``v_leak = 0``; reset by ``lif_reset``: NIR's own ``"zero"``
  (``v_reset = 0``), ``"subtract_after_leak"`` for what snnTorch's ``Leaky``
  with its default subtract reset computed before it was written as a LIF, or
  ``"subtract"``, the spec's reset: trainable on a Cortex-M but a different
  network), or the ``LI`` + ``Threshold`` + recurrent ``Scale`` subgraph that
  ``tess export --target nir`` writes (subtract reset, exact).
  ``gamma = 1 - dt/tau``; an input gain ``dt R / tau`` other than 1 is folded
  into the weights. NIR fires on ``v > th``; the layer's ``v_th`` is the
  float32 just above ``th``, the same test with our ``>=``.
* The last ``Affine``/``Linear`` into the ``Output`` becomes the ``Readout``; a
  spiking last layer gets an identity ``Readout`` (prediction = most spikes).
* ``SumPool2d`` + ``Threshold(0 < th < 1)`` -> ``MaxPooling2D`` (the same on
  binary spikes); ``SumPool2d`` alone -> ``AveragePooling2D`` with the next
  weights scaled by the window area; ``AvgPool2d`` -> ``AveragePooling2D``.
* ``Flatten`` of ``[C, H, W]`` -> ``Flatten`` (HWC order; the next weights'
  columns are permuted). PyTorch's symmetric conv padding becomes TF's
  ``same``/``valid`` with the kernel grown or trimmed by zero rows.

Anything else is a ``NIRImportError`` naming the node and why.
"""

import numpy as np

F32 = np.float32
LIF_RESETS = ("zero", "subtract_after_leak", "subtract")


class NIRImportError(ValueError):
    """A node or parameter that tess-keras cannot represent."""


def _fail(name, node, why):
    raise NIRImportError(f"node {name!r} (nir.{type(node).__name__}) cannot be imported: {why}")


def _uniform(name, node, field, values):
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        _fail(name, node, f"{field} is empty.")
    if np.max(np.abs(values - values[0])) > 1e-6 * max(1.0, abs(values[0])):
        _fail(name, node, f"{field} differs between neurons; tess-keras layers share one {field} per layer.")
    return float(values[0])


def threshold_above(th):
    """The float32 just above ``th``: ``u >= it`` iff ``u > th`` in float32."""
    return float(np.nextafter(F32(th), F32(np.inf), dtype=F32))


def _pair(value):
    value = np.asarray(value).reshape(-1)
    return int(value[0]), int(value[-1])


def tf_conv_axis(size, kernel_rows, stride, pad):
    """Our equivalent of one axis of a symmetric-padded (PyTorch) convolution.

    Args:
        size: input length; kernel_rows: bool mask of the kernel's non-zero
            rows along the axis; stride; pad: symmetric padding.

    Returns:
        ``{(mode, k2): shift}`` for every TF padding mode and kernel length
        ``k2`` that computes the same outputs: our kernel row ``r + shift``
        is PyTorch's row ``r``.
    """
    k = len(kernel_rows)
    out = (size + 2 * pad - k) // stride + 1
    rows = np.flatnonzero(kernel_rows)
    options = {}
    for k2 in range(1, k + 2 * pad + stride + 1):
        for mode in ("same", "valid"):
            if mode == "same":
                out2 = -(-size // stride)
                top = max((out2 - 1) * stride + k2 - size, 0) // 2
            else:
                out2, top = (size - k2) // stride + 1, 0
            shift = top - pad
            if out2 == out and (rows.size == 0 or (rows.min() + shift >= 0 and rows.max() + shift < k2)):
                options[(mode, k2)] = shift
    return options


def _conv(name, node, shape):
    """(kernel HWIO, padding, stride, out_shape HWC) of a NIR Conv2d."""
    weight = np.asarray(node.weight, np.float32)
    if weight.ndim != 4:
        _fail(name, node, f"its weight has shape {weight.shape}; a 2-D convolution needs [C_out, C_in, kH, kW].")
    if int(node.groups) != 1 or _pair(node.dilation) != (1, 1):
        _fail(name, node, "groups and dilation other than 1 have no tess-keras form.")
    stride = _pair(node.stride)
    if stride[0] != stride[1]:
        _fail(name, node, f"stride {stride} differs between the axes; SpikingConv2D has one stride.")
    h, w, c = shape
    if weight.shape[1] != c:
        _fail(name, node, f"it takes {weight.shape[1]} input channels but receives {c}.")
    if isinstance(node.padding, str):
        pads = (weight.shape[2] // 2, weight.shape[3] // 2) if node.padding == "same" else (0, 0)
        if node.padding == "same" and stride[0] != 1:
            _fail(name, node, "padding='same' with a stride has no agreed meaning in NIR.")
    else:
        pads = _pair(node.padding)
    axis_h = tf_conv_axis(h, np.any(weight != 0, axis=(0, 1, 3)), stride[0], pads[0])
    axis_w = tf_conv_axis(w, np.any(weight != 0, axis=(0, 1, 2)), stride[0], pads[1])
    common = sorted(set(axis_h) & set(axis_w), key=lambda key: (key[1], key[0] != "same"))
    if not common:
        _fail(name, node, f"padding {pads} with stride {stride[0]} and a {weight.shape[2]}x{weight.shape[3]} kernel "
                          f"on a {h}x{w} map has no TF 'same'/'valid' equivalent with one square kernel.")
    mode, k2 = common[0]
    kernel = np.zeros((weight.shape[0], c, k2, k2), np.float32)
    for r in range(weight.shape[2]):
        for q in range(weight.shape[3]):
            rr, qq = r + axis_h[(mode, k2)], q + axis_w[(mode, k2)]
            if 0 <= rr < k2 and 0 <= qq < k2:
                kernel[:, :, rr, qq] = weight[:, :, r, q]
    oh = (h + 2 * pads[0] - weight.shape[2]) // stride[0] + 1
    ow = (w + 2 * pads[1] - weight.shape[3]) // stride[0] + 1
    return kernel.transpose(2, 3, 1, 0), mode, stride[0], (oh, ow, weight.shape[0])


class _Graph:
    def __init__(self, graph):
        import nir

        self.nodes = graph.nodes
        self.succ = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            if src not in self.succ or dst not in self.succ:
                raise NIRImportError(f"the edge {src!r} -> {dst!r} names a node the graph does not have.")
            self.succ[src].append(dst)
        for name, node in graph.nodes.items():
            if isinstance(node, nir.NIRGraph):
                _fail(name, node, "nested graphs (snnTorch's RLeaky/RSynaptic, recurrent layers) have no tess-keras "
                                  "form; tess-keras layers are feed-forward.")
        inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        if len(inputs) != 1:
            raise NIRImportError(f"the graph must have exactly one nir.Input node; it has {len(inputs)}.")
        self.input = inputs[0]

    def next(self, name, exclude=()):
        following = [n for n in self.succ[name] if n not in exclude]
        if len(following) != 1:
            node = self.nodes[name]
            _fail(name, node, f"it feeds {len(following)} nodes ({', '.join(following) or 'none'}); tess-keras "
                              "imports chains (one path from Input to Output, plus the reset loops of neurons).")
        return following[0]


def _neuron(g, name, dt, lif_reset):
    """(params dict, name of the neuron's last node) for the neuron at ``name``."""
    import nir

    node = g.nodes[name]
    if isinstance(node, (nir.LIF, nir.LI)):
        tau = _uniform(name, node, "tau", node.tau)
        r = _uniform(name, node, "r", node.r)
        if abs(_uniform(name, node, "v_leak", node.v_leak)) > 0:
            _fail(name, node, "v_leak is not 0; tess-keras neurons leak towards 0.")
        if tau <= 0 or not 0.0 <= 1.0 - dt / tau < 1.0:
            _fail(name, node, f"tau={tau:g} gives the decay 1 - dt/tau = {1 - dt / tau:g} for dt={dt:g}, "
                              "outside [0, 1). Pass the dt the file was written for (--dt).")
        params = dict(gamma=float(F32(1.0 - dt / tau)), gain=dt * r / tau)
    if isinstance(node, nir.LIF):
        v_reset = _uniform(name, node, "v_reset", node.v_reset)
        if lif_reset == "zero" and v_reset != 0.0:
            _fail(name, node, f"v_reset={v_reset:g}; tess-keras resets to 0.")
        params.update(v_th=threshold_above(_uniform(name, node, "v_threshold", node.v_threshold)), reset=lif_reset)
        return params, name
    if isinstance(node, nir.LI):
        spike = g.next(name)
        if not isinstance(g.nodes[spike], nir.Threshold):
            _fail(name, node, "a leaky integrator is imported only as the LI + Threshold + recurrent Scale neuron "
                              "that `tess export --target nir` writes.")
        params["v_th"] = threshold_above(_uniform(spike, g.nodes[spike], "threshold", g.nodes[spike].threshold))
        loop = [n for n in g.succ[spike] if isinstance(g.nodes[n], nir.Scale) and g.succ[n] == [name]]
        if len(loop) != 1:
            _fail(spike, g.nodes[spike], "it has no recurrent Scale back into its LI (the reset).")
        scale = -_uniform(loop[0], g.nodes[loop[0]], "scale", g.nodes[loop[0]].scale)
        for reset, expected in (("subtract", params["gamma"] * params["v_th"]), ("subtract_after_leak", params["v_th"])):
            if abs(scale - expected) <= 1e-6 * max(1.0, abs(expected)):
                params["reset"] = reset
                break
        else:
            _fail(loop[0], g.nodes[loop[0]], f"its scale {-scale:g} is neither -gamma*v_th nor -v_th, the two "
                                             "subtract resets tess-keras has.")
        g.loop_nodes = getattr(g, "loop_nodes", set()) | {loop[0]}
        return params, spike
    if isinstance(node, nir.CubaLIF):
        _fail(name, node, "current-based neurons (a synaptic current with its own time constant) have no "
                          "tess-keras form; tess-keras neurons integrate their input current directly.")
    if isinstance(node, nir.IF):
        _fail(name, node, "integrate-and-fire neurons without leak are not imported; use a LIF.")
    _fail(name, node, "a synapse (Conv2d, Linear, Affine) must be followed by a neuron (LIF or LI + Threshold).")


def graph_to_layers(graph, lif_reset="zero", dt=1e-4):
    """``(layers, input_shape_hwc, notes)`` for ``SpikingSequential`` from a NIR graph.

    Each layer carries its weights in ``layer._nir_weights`` until the model is
    built (``build_model`` assigns them).
    """
    import keras
    import nir

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense

    if lif_reset not in LIF_RESETS:
        raise NIRImportError(f"--lif-reset must be one of {', '.join(LIF_RESETS)}; got {lif_reset!r}.")
    g = _Graph(graph)
    in_type = np.asarray(g.nodes[g.input].input_type.get("input"), np.int64).reshape(-1)
    if in_type.size == 4 and in_type[0] == 1:
        in_type = in_type[1:]
    if in_type.size not in (1, 3):
        _fail(g.input, g.nodes[g.input], f"input shape {tuple(in_type)}: tess-keras takes [C, H, W] frames or flat vectors.")
    shape = (int(in_type[1]), int(in_type[2]), int(in_type[0])) if in_type.size == 3 else (int(in_type[0]),)
    input_shape, layers, notes = shape, [], []
    permutation, weight_scale, spikes, index = None, 1.0, False, 0
    name = g.next(g.input)
    while True:
        node = g.nodes[name]
        index += 1
        if isinstance(node, nir.Output):
            _fail(name, node, "the graph reaches its Output without a final Linear/Affine or neuron layer.")
        if isinstance(node, (nir.Conv2d, nir.Linear, nir.Affine)):
            bias = np.asarray(getattr(node, "bias", 0.0), np.float32)
            if isinstance(node, nir.Conv2d):
                if len(shape) != 3:
                    _fail(name, node, f"it receives a flat input of {shape[0]}; a Conv2d needs [C, H, W].")
                kernel, padding, stride, out_shape = _conv(name, node, shape)
            else:
                weight = np.asarray(node.weight, np.float32)
                if len(shape) != 1 or weight.ndim != 2 or weight.shape[1] != shape[0]:
                    _fail(name, node, f"its weight {weight.shape} does not take the incoming shape {shape}; "
                                      "add a Flatten before it.")
                kernel = weight.T.copy()
                if permutation is not None:
                    kernel[permutation] = weight.T
                out_shape = (weight.shape[0],)
            kernel, weight_scale, permutation = kernel * F32(weight_scale), 1.0, None
            following = g.next(name)
            if isinstance(g.nodes[following], nir.Output):
                if isinstance(node, nir.Conv2d) or len(out_shape) != 1:
                    _fail(name, node, "the last layer before the Output must be a Linear/Affine (the readout).")
                readout = Readout(out_shape[0], name="readout")
                readout._nir_weights = [kernel, np.broadcast_to(bias, out_shape).astype(np.float32)]
                layers.append(readout)
                return layers, input_shape, notes
            if np.any(bias != 0):
                _fail(name, node, "its bias is not zero; tess-keras spiking layers have no bias. Train the network "
                                  "with bias=False (snnTorch: nn.Conv2d/nn.Linear(..., bias=False)).")
            params, last = _neuron(g, following, dt, lif_reset)
            if abs(params["gain"] - 1.0) > 1e-6:
                kernel = kernel * F32(params["gain"])
                notes.append(f"{following}: input gain dt*R/tau = {params['gain']:.6g} folded into {name}'s weights")
            if isinstance(g.nodes[following], nir.LIF) and lif_reset == "subtract":
                notes.append(f"{following}: NIR's LIF resets to v_reset; imported with the spec's subtract reset "
                             "(--lif-reset subtract), so its spikes differ from the file's")
            neuron = dict(gamma=params["gamma"], v_th=params["v_th"], reset=params["reset"], weight_standardization=False)
            if isinstance(node, nir.Conv2d):
                pool = 2 if out_shape[0] % 2 == 0 and out_shape[1] % 2 == 0 else 1
                layer = SpikingConv2D(out_shape[2], kernel.shape[0], strides=stride, padding=padding, lsg_pool=pool,
                                      name=f"conv{index}", **neuron)
            else:
                layer = SpikingDense(out_shape[0], name=f"dense{index}", **neuron)
            layer._nir_weights = [kernel]
            layers.append(layer)
            shape, spikes = out_shape, True
            name = g.next(last, exclude=getattr(g, "loop_nodes", ()))
            if isinstance(g.nodes[name], nir.Output):
                if len(shape) != 1:
                    _fail(name, g.nodes[name], "a spiking conv layer cannot be the output; end with Linear/Affine.")
                readout = Readout(shape[0], name="readout")
                readout._nir_weights = [np.eye(shape[0], dtype=np.float32), np.zeros(shape[0], np.float32)]
                layers.append(readout)
                notes.append(f"{layer.name} is the output layer: an identity Readout counts its spikes")
                return layers, input_shape, notes
            continue
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            if len(shape) != 3:
                _fail(name, node, "pooling needs a [C, H, W] input.")
            (kh, kw), (sh, sw), pads = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            if pads != (0, 0):
                _fail(name, node, "padded pooling has no exact tess-keras form.")
            out_shape = ((shape[0] - kh) // sh + 1, (shape[1] - kw) // sw + 1, shape[2])
            following = g.next(name)
            threshold = g.nodes[following]
            if isinstance(node, nir.SumPool2d) and isinstance(threshold, nir.Threshold):
                th = _uniform(following, threshold, "threshold", threshold.threshold)
                if not (spikes and 0.0 <= th < 1.0):
                    _fail(following, threshold, "SumPool2d + Threshold is imported as a max-pool only on binary "
                                                "spikes with a threshold in [0, 1).")
                layers.append(keras.layers.MaxPooling2D((kh, kw), (sh, sw), name=f"pool{index}"))
                name = g.next(following)
            else:
                layers.append(keras.layers.AveragePooling2D((kh, kw), (sh, sw), name=f"pool{index}"))
                if isinstance(node, nir.SumPool2d):
                    weight_scale = float(kh * kw)
                spikes, name = False, following
            shape = out_shape
            continue
        if isinstance(node, nir.Flatten):
            if len(shape) == 3:
                h, w, c = shape
                permutation = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
                layers.append(keras.layers.Flatten(name=f"flatten{index}"))
            shape, name = (int(np.prod(shape)),), g.next(name)
            continue
        _fail(name, node, "tess-keras imports Conv2d, Linear, Affine, LIF (or LI + Threshold), SumPool2d, AvgPool2d "
                          "and Flatten nodes.")


def build_model(graph, lif_reset="zero", dt=None, rule="tess", name="imported"):
    """A built ``SpikingSequential`` with the graph's weights.

    Args:
        graph: a ``nir.NIRGraph``.
        lif_reset: how a ``LIF`` node resets (``LIF_RESETS``).
        dt: the Euler step (None: ``graph.metadata["dt"]``, else 1e-4).
        rule: the model's learning rule.

    Returns:
        ``(model, notes)``; notes list the conversions made.
    """
    from tess_keras.export.nir_reference import graph_dt
    from tess_keras.models import SpikingSequential

    dt = graph_dt(graph) if dt is None else float(dt)
    layers, input_shape, notes = graph_to_layers(graph, lif_reset, dt)
    model = SpikingSequential(layers, rule=rule, name=name)
    model.build((None, None) + tuple(input_shape))
    for layer in layers:
        weights = getattr(layer, "_nir_weights", None)
        if weights is not None:
            layer.set_weights(weights)
            del layer._nir_weights
    return model, notes
