"""A small NumPy executor of NIR graphs: NIR's own semantics, one time step at a time.

NIR defines its neurons as continuous-time equations (``nir.LI``:
``tau dv/dt = (v_leak - v) + R I``; ``nir.LIF`` adds ``z = [v > v_threshold]``
and ``v <- v_reset`` where ``z = 1``; ``nir.Threshold``: ``z = [I > threshold]``).
This executor integrates them with the forward-Euler step that snnTorch,
Norse and the NIR paper use, for a step ``dt`` (the graph's ``metadata["dt"]``
when present, else ``1e-4``, snnTorch's):

    v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak + (dt R / tau) I[t]
    z[t] = [v[t] > v_threshold];   v[t] = v_reset where z[t] = 1   (LIF)

A node's input is the sum of what its predecessors send. Nodes run in a
depth-first order from the input; an edge that points back to a node already
run this step (a recurrent edge) delivers the value of the previous step (zero
at the first). Conv2d and the pools take ``[batch, C, H, W]`` (PyTorch's
layout), Flatten flattens everything after the batch axis (C, H, W order).
Everything runs in float32.
"""

import numpy as np

DEFAULT_DT = 1e-4
F32 = np.float32


class NIRRunError(ValueError):
    """The graph uses a node type or parameter this executor does not run."""


def graph_dt(graph, default=DEFAULT_DT):
    """The time step stored in ``graph.metadata["dt"]`` or ``default``."""
    value = (graph.metadata or {}).get("dt", default) if hasattr(graph, "metadata") else default
    return float(np.asarray(value).reshape(-1)[0])


def execution_order(graph):
    """(order, back_edges): nodes depth-first from the input nodes; edges to a
    node on the current path are recurrent (one-step delayed)."""
    successors = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        successors[src].append(dst)
    import nir

    starts = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if not starts:
        raise NIRRunError("the graph has no nir.Input node.")
    visited, on_path, finished, back = set(), set(), [], set()

    def visit(name):
        visited.add(name)
        on_path.add(name)
        for nxt in successors[name]:
            if nxt in on_path:
                back.add((name, nxt))
            elif nxt not in visited:
                visit(nxt)
        on_path.discard(name)
        finished.append(name)

    for start in starts:
        if start not in visited:
            visit(start)
    return list(reversed(finished)), back


def _conv2d(x, weight, bias, stride, padding):
    batch, channels, height, width = x.shape
    out_c, in_c, kh, kw = weight.shape
    ph, pw = padding
    sh, sw = stride
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (height + 2 * ph - kh) // sh + 1
    ow = (width + 2 * pw - kw) // sw + 1
    out = np.zeros((batch, out_c, oh, ow), F32)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j]).astype(F32)
    return out + bias.reshape(1, -1, 1, 1).astype(F32)


def _pool(x, kernel, stride, padding, mean):
    kh, kw = (int(k) for k in kernel)
    sh, sw = (int(s) for s in stride)
    ph, pw = (int(p) for p in padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.zeros(x.shape[:2] + (oh, ow), F32)
    for i in range(kh):
        for j in range(kw):
            out += xp[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
    return out / F32(kh * kw) if mean else out


def _pair(value):
    value = np.asarray(value).reshape(-1)
    return (int(value[0]), int(value[-1]))


def _leak_constants(node, dt):
    tau = np.asarray(node.tau, np.float64)
    r = np.asarray(node.r, np.float64)
    decay = (1.0 - dt / tau).astype(F32)
    gain = (dt * r / tau).astype(F32)
    leak = (dt / tau * np.asarray(node.v_leak, np.float64)).astype(F32)
    return decay, gain, leak


def run_graph(graph, inputs, dt=None):
    """Run ``graph`` over ``inputs`` ``[batch, T, ...]`` (per-step layout of the
    graph's input, e.g. ``[C, H, W]``).

    Returns:
        ``[batch, T, ...]`` float32: the Output node's value at every step.

    Raises:
        NIRRunError: a node type this executor does not implement.
    """
    import nir

    dt = graph_dt(graph) if dt is None else float(dt)
    order, back = execution_order(graph)
    preds = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    outputs = [name for name in order if isinstance(graph.nodes[name], nir.Output)]
    if len(outputs) != 1:
        raise NIRRunError(f"the graph must have one nir.Output node reachable from the input; found {len(outputs)}.")
    inputs = np.asarray(inputs, F32)
    batch, steps = inputs.shape[:2]
    state, value, results = {}, {}, []
    for t in range(steps):
        previous = dict(value)
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                value[name] = inputs[:, t]
                continue
            total = None
            for src in preds[name]:
                delayed = (src, name) in back
                if delayed and src not in previous:
                    continue  # first step: the recurrent edge carries zero
                x = previous[src] if delayed else value[src]
                total = x if total is None else total + x
            if total is None:
                raise NIRRunError(f"node {name!r} receives no input.")
            value[name] = _step(name, node, total, state, dt, batch)
        results.append(value[outputs[0]])
    return np.stack(results, axis=1)


def _step(name, node, x, state, dt, batch):
    import nir

    if isinstance(node, nir.Output):
        return x
    if isinstance(node, nir.Affine):
        return (x @ np.asarray(node.weight, F32).T + np.asarray(node.bias, F32)).astype(F32)
    if isinstance(node, nir.Linear):
        return (x @ np.asarray(node.weight, F32).T).astype(F32)
    if isinstance(node, nir.Scale):
        return (x * np.asarray(node.scale, F32)).astype(F32)
    if isinstance(node, nir.Conv2d):
        if int(node.groups) != 1 or _pair(node.dilation) != (1, 1) or isinstance(node.padding, str):
            raise NIRRunError(f"node {name!r}: only Conv2d with groups=1, dilation=1 and integer padding is run.")
        return _conv2d(x, np.asarray(node.weight, F32), np.asarray(node.bias, F32), _pair(node.stride), _pair(node.padding))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return _pool(x, _pair(node.kernel_size), _pair(node.stride), _pair(node.padding), isinstance(node, nir.AvgPool2d))
    if isinstance(node, nir.Flatten):
        start = int(node.start_dim)
        start = start + 1 if start >= 0 else x.ndim + start
        end = int(node.end_dim)
        end = end + 1 if end >= 0 else x.ndim + end
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1 :])
    if isinstance(node, nir.Threshold):
        return (x > np.asarray(node.threshold, F32)).astype(F32)
    if isinstance(node, (nir.LI, nir.LIF)):
        decay, gain, leak = _leak_constants(node, dt)
        v = state.get(name, np.zeros_like(x))
        v = (decay * v + leak + gain * x).astype(F32)
        if isinstance(node, nir.LI):
            state[name] = v
            return v
        z = v > np.asarray(node.v_threshold, F32)
        state[name] = np.where(z, np.asarray(node.v_reset, F32), v).astype(F32)
        return z.astype(F32)
    raise NIRRunError(f"node {name!r} is a nir.{type(node).__name__}, which this executor does not run.")


def predict(graph, inputs, batch_size=128, dt=None):
    """argmax over classes of the Output summed over time, in batches."""
    predictions = []
    for start in range(0, len(inputs), batch_size):
        out = run_graph(graph, inputs[start : start + batch_size], dt)
        predictions.append(np.argmax(out.sum(axis=1), axis=-1))
    return np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
