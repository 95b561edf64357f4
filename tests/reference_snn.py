"""A slow, obviously correct NumPy (float64) reference of TESS_SPEC.md.

Written straight from the spec's equations with loops and einsums, without
importing tess_keras, so the rule tests compare the library against an
independent implementation. Networks are plain lists of blocks:

    {"kind": "conv", "w": [k, k, C_in, C_out], "lsg_pool": k}   ('same', stride 1)
    {"kind": "dense", "w": [n_in, n_out]}
    {"kind": "maxpool"}                                          (2x2, stride 2, 'valid')
    {"kind": "flatten"}

and a readout ``(W [F, C], b [C])``.
"""

import numpy as np

GAMMA = 0.5
V_TH = 0.6
LAMBDA_PRE = 0.5
LAMBDA_POST = 0.2
WS_EPSILON = 1e-4


# -- neuron (spec §1) -----------------------------------------------------------
def psi(u):
    """Psi(u) = 0.3 max(1 - |u - v_th|, 0)."""
    return 0.3 * np.maximum(1.0 - np.abs(u - V_TH), 0.0)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def one_hot(labels, num_classes):
    return np.eye(num_classes)[np.asarray(labels)]


def weight_standardize(w, gain):
    """W' = g (W - mean) / sqrt(var * fan_in + 1e-4), stats per output channel."""
    flat = w.reshape(-1, w.shape[-1])
    fan_in = flat.shape[0]
    mean = flat.mean(axis=0)
    var = ((flat - mean) ** 2).mean(axis=0)
    return gain * (w - mean) / np.sqrt(var * fan_in + WS_EPSILON)


# -- synapses ------------------------------------------------------------------------
def _pad_same(x, k):
    # TensorFlow 'SAME' with stride 1: (k-1)//2 before, the rest after.
    before = (k - 1) // 2
    after = k - 1 - before
    return np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))


def conv2d(x, w):
    """Cross-correlation, 'same' padding, stride 1. x [B,H,W,Ci], w [k,k,Ci,Co]."""
    k = w.shape[0]
    height, width = x.shape[1:3]
    xp = _pad_same(x, k)
    out = np.zeros(x.shape[:3] + (w.shape[-1],))
    for i in range(k):
        for j in range(k):
            out += np.einsum("bhwc,cd->bhwd", xp[:, i : i + height, j : j + width], w[i, j])
    return out


def conv2d_filter_grad(x, e, k):
    """sum_b e (x) x for a convolution: dW[i,j,c,d] = sum_{b,y,x} e[b,y,x,d] xpad[b,y+i,x+j,c]."""
    height, width = x.shape[1:3]
    xp = _pad_same(x, k)
    grad = np.zeros((k, k, x.shape[-1], e.shape[-1]))
    for i in range(k):
        for j in range(k):
            grad[i, j] = np.einsum("bhwc,bhwd->cd", xp[:, i : i + height, j : j + width], e)
    return grad


def conv2d_input_grad(e, w, input_shape):
    """Gradient of sum(e * conv2d(x, w)) with respect to x."""
    k = w.shape[0]
    height, width = input_shape[1:3]
    before = (k - 1) // 2
    grad = np.zeros((input_shape[0], height + k - 1, width + k - 1, input_shape[-1]))
    for i in range(k):
        for j in range(k):
            grad[:, i : i + height, j : j + width] += np.einsum("bhwd,cd->bhwc", e, w[i, j])
    return grad[:, before : before + height, before : before + width]


def synapse(block, x):
    return conv2d(x, block["w"]) if block["kind"] == "conv" else x @ block["w"]


def filter_grad(block, x, e):
    if block["kind"] == "conv":
        return conv2d_filter_grad(x, e, block["w"].shape[0])
    return x.T @ e


def input_grad(block, e, x):
    if block["kind"] == "conv":
        return conv2d_input_grad(e, block["w"], x.shape)
    return e @ block["w"].T


# -- max pool 2x2 ----------------------------------------------------------------------
def max_pool(x):
    batch, height, width, channels = x.shape
    out = np.zeros((batch, height // 2, width // 2, channels))
    for i in range(height // 2):
        for j in range(width // 2):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(1, 2))
    return out


def max_pool_backward(x, grad_out):
    """Route each window's gradient to its first maximum in row-major order
    (TensorFlow's choice among ties, which binary spike maps always have)."""
    grad = np.zeros_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[3]):
            for i in range(grad_out.shape[1]):
                for j in range(grad_out.shape[2]):
                    window = x[b, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
                    di, dj = np.unravel_index(np.argmax(window), window.shape)  # argmax = first max
                    grad[b, 2 * i + di, 2 * j + dj, c] += grad_out[b, i, j, c]
    return grad


# -- learning-signal generation (spec §2) ----------------------------------------------------
def adaptive_windows(size, k):
    """PyTorch adaptive_avg_pool windows: [floor(i n/k), ceil((i+1) n/k))."""
    return [(int(np.floor(i * size / k)), int(np.ceil((i + 1) * size / k))) for i in range(k)]


def adaptive_pool(o, k):
    """[B,H,W,C] -> [B, C*k*k], averaged per window, flattened channel-major."""
    batch, height, width, channels = o.shape
    out = np.zeros((batch, channels, k, k))
    for i, (h0, h1) in enumerate(adaptive_windows(height, k)):
        for j, (w0, w1) in enumerate(adaptive_windows(width, k)):
            out[:, :, i, j] = o[:, h0:h1, w0:w1, :].mean(axis=(1, 2))
    return out.reshape(batch, channels * k * k)


def adaptive_pool_transpose(g, shape, k):
    """Adjoint of ``adaptive_pool``: [B, C*k*k] -> [B,H,W,C]."""
    batch, height, width, channels = shape
    g = g.reshape(batch, channels, k, k)
    out = np.zeros(shape)
    for i, (h0, h1) in enumerate(adaptive_windows(height, k)):
        for j, (w0, w1) in enumerate(adaptive_windows(width, k)):
            area = (h1 - h0) * (w1 - w0)
            out[:, h0:h1, w0:w1, :] += g[:, :, i, j][:, None, None, :] / area
    return out


def square_wave_basis(num_classes, n):
    """B[c, k] = sign(sin(f_c k)) / n, f_c = linspace(50, 512, C)."""
    basis = np.zeros((num_classes, n))
    for c, f in enumerate(np.linspace(50.0, 512.0, num_classes)):
        for k in range(n):
            basis[c, k] = np.sign(np.sin(f * k)) / n
    return basis


def lsg_input(block, o, pooled=False):
    """a[t] = pool(o[t]) for conv layers, the spikes themselves for dense
    layers; ``pooled``: the block output, pool(max_pool(o[t]))."""
    if pooled:
        o = max_pool(o)
    return adaptive_pool(o, block["lsg_pool"]) if block["kind"] == "conv" else o


def local_signal(block, o, basis, targets, pooled=False):
    """m[t] = pool^T(B^T(softmax(B a[t]) - y*)); with ``pooled`` (the LSG reads
    the block output after a max-pool) also through the max-pool's gradient."""
    a = lsg_input(block, o, pooled)
    g = (softmax(a @ basis.T) - targets) @ basis
    if block["kind"] != "conv":
        return g
    if not pooled:
        return adaptive_pool_transpose(g, o.shape, block["lsg_pool"])
    block_out = max_pool(o)
    return max_pool_backward(o, adaptive_pool_transpose(g, block_out.shape, block["lsg_pool"]))


def pooled_by_block(blocks, i, lsg_source):
    """Does layer i's LSG read a max-pool's output? (``lsg_source='block'`` and
    a max-pool right after the layer)."""
    if lsg_source not in ("block", "layer"):
        raise ValueError(lsg_source)
    return lsg_source == "block" and i + 1 < len(blocks) and blocks[i + 1]["kind"] == "maxpool"


# -- forward over T -------------------------------------------------------------------
def forward(blocks, readout, x):
    """Run the network over x [B, T, ...].

    Returns a dict with, per step t: ``block_inputs[t][i]`` (input of block
    i), ``logits[t]``, ``features[t]`` (readout input), and per spiking
    layer l: ``x[l]``, ``u[l]``, ``o[l]`` arrays [T, B, ...].
    """
    w_out, b_out = readout
    steps = x.shape[1]
    spiking = [i for i, block in enumerate(blocks) if block["kind"] in ("conv", "dense")]
    u = {i: 0.0 for i in spiking}
    o = {i: 0.0 for i in spiking}
    rec = {"block_inputs": [], "logits": [], "features": []}
    rec.update({key: [[] for _ in spiking] for key in ("x", "u", "o")})
    for t in range(steps):
        h = x[:, t]
        inputs = []
        for i, block in enumerate(blocks):
            inputs.append(h)
            if block["kind"] in ("conv", "dense"):
                u[i] = GAMMA * (u[i] - V_TH * o[i]) + synapse(block, h)
                o[i] = (u[i] >= V_TH).astype(np.float64)
                layer_index = spiking.index(i)
                rec["x"][layer_index].append(h)
                rec["u"][layer_index].append(u[i])
                rec["o"][layer_index].append(o[i])
                h = o[i]
            elif block["kind"] == "maxpool":
                h = max_pool(h)
            elif block["kind"] == "flatten":
                h = h.reshape(h.shape[0], -1)
            else:
                raise ValueError(block["kind"])
        rec["block_inputs"].append(inputs)
        rec["features"].append(h)
        rec["logits"].append(h @ w_out + b_out)
    for key in ("x", "u", "o"):
        rec[key] = [np.stack(v) for v in rec[key]]
    rec["logits"] = np.stack(rec["logits"])
    rec["features"] = np.stack(rec["features"])
    rec["spiking"] = spiking
    return rec


def readout_gradients(rec, targets):
    """True CE of the instantaneous logits on detached inputs, summed over t and batch."""
    errors = softmax(rec["logits"]) - targets
    dw = sum(f.T @ e for f, e in zip(rec["features"], errors))
    return dw, errors.sum(axis=(0, 1))


def cross_entropy_sum(rec, targets):
    return float(-(targets * np.log(softmax(rec["logits"]))).sum())


# -- learning signals of S-TLLR ---------------------------------------------------------
def stllr_signals(blocks, readout, rec, t, targets):
    """m^l[t]: the step's CE error back-propagated through the blocks above
    layer l at step t only (psi for the spike, max-pool routing, the
    previous step's states constant)."""
    spiking = rec["spiking"]
    grad = (softmax(rec["logits"][t]) - targets) @ readout[0].T
    signals = [None] * len(spiking)
    for i in reversed(range(len(blocks))):
        block, x = blocks[i], rec["block_inputs"][t][i]
        if block["kind"] in ("conv", "dense"):
            layer_index = spiking.index(i)
            signals[layer_index] = grad
            grad = input_grad(block, grad * psi(rec["u"][layer_index][t]), x)
        elif block["kind"] == "maxpool":
            grad = max_pool_backward(x, grad)
        else:
            grad = grad.reshape(x.shape)
    return signals


# -- TESS / S-TLLR updates (spec §2, §3) --------------------------------------------------------
def trace_rule(blocks, readout, x, labels, alpha_pre=1.0, alpha_post=1.0, t_l=0,
               lambda_pre=LAMBDA_PRE, lambda_post=LAMBDA_POST, signal="tess", lsg_source="block", h0="zero"):
    """Every quantity of TESS (``signal='tess'``) or S-TLLR (``'stllr'``).

    ``lsg_source``: ``'block'`` (spec default: a layer followed by a max-pool
    reads the pooled spikes) or ``'layer'`` (its own spikes). ``h0``: ``'zero'``
    (spec: h[0] = 0) or ``'psi'`` (the literal reading h[0] = psi(u[-1] = 0) =
    0.12, which the library must *not* do; kept to show the tests can tell).

    Returns ``(rec, layers, readout_grads)``; ``layers[layer_index]`` holds lists over
    t of q, h, psi, a, m, the per-step update dW_t, the basis B and the
    summed update dW (steps t >= t_l).
    """
    if h0 not in ("zero", "psi"):
        raise ValueError(h0)
    rec = forward(blocks, readout, x)
    num_classes = readout[0].shape[1]
    targets = one_hot(labels, num_classes)
    steps = x.shape[1]
    if signal == "stllr":
        stllr = [stllr_signals(blocks, readout, rec, t, targets) for t in range(steps)]
    layers = []
    for layer_index, i in enumerate(rec["spiking"]):
        block = blocks[i]
        pooled = pooled_by_block(blocks, i, lsg_source)
        xs, us, os_ = rec["x"][layer_index], rec["u"][layer_index], rec["o"][layer_index]
        basis = square_wave_basis(num_classes, lsg_input(block, os_[0], pooled).shape[1])
        q = np.zeros_like(xs[0])
        h = np.zeros_like(us[0])
        out = {k: [] for k in ("q", "h", "psi", "a", "m", "dW_t")}
        out["B"] = basis
        out["dW"] = np.zeros_like(block["w"])
        for t in range(steps):
            q = lambda_pre * q + xs[t]
            if t > 0:
                h = lambda_post * h + psi(us[t - 1])  # psi of the past membrane
            elif h0 == "psi":
                h = psi(np.zeros_like(us[0]))  # u[-1] = 0: psi(0) = 0.12 in every h[0]
            if signal == "tess":
                m = local_signal(block, os_[t], basis, targets, pooled)
            else:
                m = stllr[t][layer_index]
            dw_t = alpha_pre * filter_grad(block, q, m * psi(us[t])) + alpha_post * filter_grad(block, xs[t], m * h)
            if t >= t_l:
                out["dW"] += dw_t
            values = {"q": q, "h": h, "psi": psi(us[t]), "a": lsg_input(block, os_[t], pooled), "m": m, "dW_t": dw_t}
            for key, value in values.items():
                out[key].append(value)
        layers.append(out)
    return rec, layers, readout_gradients(rec, targets)
