"""Leaky integrate-and-fire neuron with soft reset (TESS_SPEC.md §1).

    u[t] = gamma * (u[t-1] - v_th * o[t-1]) + I[t]
    o[t] = Heaviside(u[t] - v_th)

Two further reset variants (``reset=``) exist for networks imported from
other frameworks (snnTorch's ``Leaky``; NIR's LIF), all firing on ``>=``:

    "subtract_after_leak":  u[t] = gamma * u[t-1] + I[t] - v_th * o[t-1]
    "zero":                 u[t] = gamma * (1 - o[t-1]) * u[t-1] + I[t]

The spike's derivative is replaced by the triangular surrogate
``psi(u) = 0.3 * max(1 - |u - v_th|, 0)`` (the paper's "secondary
activation"), used by every learning rule.
"""

import tensorflow as tf

GAMMA = 0.5
V_TH = 0.6
SURROGATE_SCALE = 0.3
RESETS = ("subtract", "subtract_after_leak", "zero")


def surrogate(u, v_th=V_TH):
    """Psi(u): the triangular surrogate derivative of the spike function."""
    return SURROGATE_SCALE * tf.nn.relu(1.0 - tf.abs(u - v_th))


def spike(u, v_th=V_TH):
    """Heaviside(u - v_th) with psi(u) as its gradient (used by BPTT/S-TLLR)."""

    @tf.custom_gradient
    def _spike(u):
        out = tf.cast(u >= v_th, u.dtype)

        def grad(upstream):
            return upstream * surrogate(u, v_th)

        return out, grad

    return _spike(u)


def check_reset(reset):
    """``reset`` if it names a reset variant, else ``ValueError``."""
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {', '.join(RESETS)}; got {reset!r}")
    return reset


def subtract_amount(reset, gamma, v_th):
    """``r`` with which the reset is ``u = gamma * (u - r * o) + I``: ``v_th`` for
    ``"subtract"``, ``v_th / gamma`` for ``"subtract_after_leak"``; None for
    ``"zero"`` (or ``gamma = 0`` after the leak), which have no such form."""
    if reset == "subtract":
        return v_th
    if reset == "subtract_after_leak" and gamma > 0:
        return v_th / gamma
    return None


def lif_step(u_prev, o_prev, current, gamma=GAMMA, v_th=V_TH, reset="subtract"):
    """One LIF step. Returns ``(u, o)``.

    Args:
        u_prev, o_prev: membrane and spikes of the previous step.
        current: input current ``I[t]``.
        gamma, v_th: leak factor and threshold.
        reset: ``"subtract"`` (the spec's soft reset before the leak),
            ``"subtract_after_leak"`` (snnTorch's ``Leaky``) or ``"zero"``.
    """
    if reset == "subtract":
        u = gamma * (u_prev - v_th * o_prev) + current
    elif reset == "subtract_after_leak":
        u = (gamma * u_prev + current) - v_th * o_prev
    elif reset == "zero":
        u = gamma * ((1.0 - o_prev) * u_prev) + current
    else:
        check_reset(reset)
    return u, spike(u, v_th)
