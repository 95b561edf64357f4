"""Leaky integrate-and-fire neuron with soft reset (TESS_SPEC.md §1).

    u[t] = gamma * (u[t-1] - v_th * o[t-1]) + I[t]
    o[t] = Heaviside(u[t] - v_th)

The spike's derivative is replaced by the triangular surrogate
``psi(u) = 0.3 * max(1 - |u - v_th|, 0)`` (the paper's "secondary
activation"), used by every learning rule.
"""

import tensorflow as tf

GAMMA = 0.5
V_TH = 0.6
SURROGATE_SCALE = 0.3


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


def lif_step(u_prev, o_prev, current, gamma=GAMMA, v_th=V_TH):
    """One soft-reset LIF step. Returns ``(u, o)``."""
    u = gamma * (u_prev - v_th * o_prev) + current
    return u, spike(u, v_th)
