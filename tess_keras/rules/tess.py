"""TESS: temporally and spatially local learning (spec §2)."""

import keras
import tensorflow as tf

from tess_keras import neurons
from tess_keras.rules.base import LearningRule, align_gradients, loss_scale, readout_gradients, step_cross_entropy
from tess_keras.rules.lsg import check_lsg_source, following_pools, local_learning_signal, square_wave_basis

LAMBDA_PRE = 0.5
LAMBDA_POST = 0.2


def filter_gradient(layer, kernel, inputs, errors):
    """``sum_b errors (x) inputs`` for the layer's synapse: the outer product
    for a dense layer, the filter gradient of the convolution for a conv.

    Several (input, error) pairs are stacked along the batch so one
    correlation computes their sum. The tape spans this layer's synapse only.
    The correlation runs in the layer's compute dtype (16 bits under mixed
    precision); the result has the kernel's dtype (float32).
    """
    compute = layer.compute_dtype
    inputs = [tf.cast(x, compute) for x in inputs]
    inputs = tf.concat(inputs, axis=0) if len(inputs) > 1 else inputs[0]
    errors = tf.concat(errors, axis=0) if len(errors) > 1 else errors[0]
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        current = layer.synapse(inputs, tf.cast(kernel, compute))
    return tape.gradient(current, kernel, output_gradients=tf.cast(errors, current.dtype))


@keras.saving.register_keras_serializable(package="tess_keras")
class TESS(LearningRule):
    """Temporally and spatially local learning (TESS_SPEC.md §2).

    Per spiking layer and sample, two O(n) traces:
    ``q[t] = lambda_pre q[t-1] + x[t]`` and
    ``h[t] = lambda_post h[t-1] + psi(u[t-1])`` with ``h[0] = 0`` (no past
    membrane at t = 0, the authors' code; not psi(0)); at every step ``t >= t_l``

        dW += alpha_pre (m ⊙ psi(u[t])) ⊗ q[t] + alpha_post (m ⊙ h[t]) ⊗ x[t]

    with the learning signal ``m[t]`` generated from the layer's block
    output (or its own spikes, ``lsg_source``) through a fixed square-wave
    matrix B. The readout learns from the
    per-step cross-entropy on detached inputs. Updates are summed over time
    and batch and applied once per batch by the model's optimizer. No tape
    spans two layers or two time steps; weight standardisation is chained
    once per batch from the summed update of the effective kernel.

    Args:
        alpha_pre: weight of the causal (pre-synaptic trace) term, spec 1.
        alpha_post: weight of the non-causal term, -1, 0 or +1; 0 drops
            the h trace (half the trace memory).
        lambda_pre, lambda_post: trace decays (spec 0.5, 0.2).
        t_l: first step that produces updates.
        lsg_source: ``"block"`` (default): where a ``MaxPooling2D`` follows the
            layer, the LSG pools the spikes after it and m reaches the neurons
            through the max-pool's gradient (first maximum of each window in
            row-major order); ``"layer"``: the layer's own spikes, before any
            pool. See ``tess_keras.rules.lsg``. (S-TLLR ignores it.)
    """

    name = "tess"

    def __init__(
        self, alpha_pre=1.0, alpha_post=1.0, lambda_pre=LAMBDA_PRE, lambda_post=LAMBDA_POST, t_l=0, lsg_source="block"
    ):
        self.alpha_pre = float(alpha_pre)
        self.alpha_post = float(alpha_post)
        self.lambda_pre = float(lambda_pre)
        self.lambda_post = float(lambda_post)
        self.t_l = int(t_l)
        self.lsg_source = check_lsg_source(lsg_source)

    def get_config(self):
        return {
            "alpha_pre": self.alpha_pre,
            "alpha_post": self.alpha_post,
            "lambda_pre": self.lambda_pre,
            "lambda_post": self.lambda_post,
            "t_l": self.t_l,
            "lsg_source": self.lsg_source,
        }

    # S-TLLR overrides this to back-propagate the step's error instead.
    def learning_signals(self, model, x_t, states, kernels, targets, bases, scale=None):
        """One forward step plus each spiking layer's learning signal m[t]
        (times ``scale``, the mixed-float16 loss scale, when given)."""
        logits, new_states, records, features = model.forward_step(x_t, states, kernels, training=True)
        layers = model.spiking_layers
        pools = following_pools(model) if self.lsg_source == "block" else [None] * len(layers)
        signals = [
            local_learning_signal(layer, record.spikes, basis, targets, scale, pool)
            for layer, record, basis, pool in zip(layers, records, bases, pools)
        ]
        return logits, new_states, records, features, signals

    def compute_gradients(self, model, inputs, labels):
        layers = model.spiking_layers
        targets = tf.one_hot(tf.cast(labels, tf.int32), model.num_classes)
        batch = tf.shape(inputs)[0]
        bases = [tf.constant(square_wave_basis(model.num_classes, layer.lsg_size)) for layer in layers]
        use_post = self.alpha_post != 0.0
        scale = loss_scale(model)

        # The only tape outside the time loop: W -> W' of each layer on its own.
        with tf.GradientTape() as standardization_tape:
            kernels = model.effective_kernels()

        def zeros(shape):
            return tf.zeros(tf.concat([[batch], tf.constant(shape[1:], tf.int32)], axis=0))

        pre_traces = [zeros(model.step_input_shapes[layer.name]) for layer in layers]
        post_traces = [zeros((None,) + tuple(layer.state_shape)) for layer in layers] if use_post else []
        kernel_updates = [tf.zeros_like(k) for k in kernels]
        readout_updates = [tf.zeros_like(v) for v in model.readout.trainable_variables]

        def body(t, x_t, states, carry):
            pre_traces, post_traces, kernel_updates, readout_updates, logits_sum, ce_sum = carry
            logits, new_states, records, features, signals = self.learning_signals(
                model, x_t, states, kernels, targets, bases, scale
            )
            active = tf.cast(t >= self.t_l, tf.float32)
            has_past = tf.cast(t > 0, tf.float32)  # h[0] = 0: no psi(u[-1]) at t = 0
            new_pre, new_post, new_updates = [], [], []
            for i, (layer, record, signal) in enumerate(zip(layers, records, signals)):
                # Traces and updates stay float32 whatever the compute dtype.
                q = self.lambda_pre * pre_traces[i] + tf.cast(record.inputs, tf.float32)
                errors = [self.alpha_pre * signal * neurons.surrogate(record.potential, layer.v_th)]
                sources = [q]
                if use_post:
                    u_prev = states[i][0]
                    h = self.lambda_post * post_traces[i] + has_past * neurons.surrogate(u_prev, layer.v_th)
                    errors.append(self.alpha_post * signal * h)
                    sources.append(record.inputs)
                    new_post.append(h)
                new_pre.append(q)
                grad = filter_gradient(layer, kernels[i], sources, errors)
                new_updates.append(kernel_updates[i] + active * grad)
            readout_step = readout_gradients(model.readout, tf.stop_gradient(features), logits, targets, scale)
            readout_updates = [a + g for a, g in zip(readout_updates, readout_step)]
            carry = (
                new_pre,
                new_post,
                new_updates,
                readout_updates,
                logits_sum + logits,
                ce_sum + step_cross_entropy(logits, targets),
            )
            return new_states, carry

        carry = (
            pre_traces,
            post_traces,
            kernel_updates,
            readout_updates,
            tf.zeros((batch, model.num_classes)),
            tf.constant(0.0),
        )
        _, _, kernel_updates, readout_updates, logits_sum, ce_sum = model.time_loop(inputs, body, carry)

        hidden_variables = [v for layer in layers for v in layer.trainable_variables]
        hidden_grads = standardization_tape.gradient(kernels, hidden_variables, output_gradients=kernel_updates)
        grads = {id(v): g for v, g in zip(hidden_variables, hidden_grads)}
        grads.update({id(v): g for v, g in zip(model.readout.trainable_variables, readout_updates)})
        return align_gradients(model, grads), ce_sum, logits_sum
