"""A stack of spiking layers run over time and trained by a learning rule."""

import collections

import keras
import tensorflow as tf

from tess_keras import neurons
from tess_keras.layers import Readout, SpikingLayer

# What one spiking layer did at one time step: its input x[t], membrane u[t]
# and spikes o[t]. Learning rules build their updates from these.
StepRecord = collections.namedtuple("StepRecord", ["inputs", "potential", "spikes"])


@keras.saving.register_keras_serializable(package="tess_keras")
class SpikingSequential(keras.Model):
    """Sequential spiking network over ``[batch, T, ...]`` inputs.

    Each time step runs every layer once: spiking layers (``SpikingConv2D``,
    ``SpikingDense``) keep their membrane state across steps, stateless Keras
    layers (``MaxPooling2D``, ``AveragePooling2D``, ``Flatten``,
    ``GlobalAveragePooling2D``, ...) are applied per step, and the final
    ``Readout`` turns the last spikes into logits ``z[t]``. ``call`` returns
    ``sum_t z[t]`` (argmax = prediction). States start at zero for every
    sample.

    Training uses the rule given here (``"tess"``, ``"stllr"``, ``"bptt"`` or
    a ``tess_keras.rules`` object): ``model.fit`` calls ``train_step``, which
    asks the rule for the gradients and applies one optimizer step per batch.
    The reported ``loss`` is the per-step cross-entropy averaged over time
    and batch, the same for every rule and for ``evaluate``.

    Args:
        layers: list of layers; the last one must be a ``Readout``.
        rule: learning rule name or instance.

    Example:
        >>> model = SpikingSequential([
        ...     SpikingConv2D(16, 3, lsg_pool=2), keras.layers.MaxPooling2D(2),
        ...     keras.layers.Flatten(), Readout(10)], rule="tess")
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(x_train, y_train)   # x: [N, T, 8, 8, 1], y: int labels
    """

    def __init__(self, layers, rule="tess", **kwargs):
        super().__init__(**kwargs)
        from tess_keras import rules

        layers = list(layers)
        if not layers or not isinstance(layers[-1], Readout):
            raise ValueError("SpikingSequential needs a Readout as its last layer (the per-step logits).")
        for layer in layers[:-1]:
            if isinstance(layer, (Readout, keras.layers.RNN)) or getattr(layer, "stateful", False):
                raise ValueError(f"Layer {layer.name} ({type(layer).__name__}) cannot be used inside a spiking model.")
        self.blocks = layers
        self.rule = rules.get(rule)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    # -- structure ----------------------------------------------------------
    @property
    def readout(self):
        return self.blocks[-1]

    @property
    def spiking_layers(self):
        return [layer for layer in self.blocks if isinstance(layer, SpikingLayer)]

    @property
    def num_classes(self):
        return self.readout.units

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"Spiking models take [batch, T, ...] inputs; got shape {tuple(input_shape)}.")
        shape = (None,) + tuple(input_shape[2:])
        self.step_input_shapes = {}
        for layer in self.blocks:
            self.step_input_shapes[layer.name] = shape
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def build_on_first_use(self, inputs):
        """Build from the first batch's shape, as Keras models do.

        ``fit``, ``evaluate`` and the learning rules read the layers' kernels
        before any forward call, so ``train_step``/``test_step`` build the
        model here when the user has not called ``build`` yet.

        Args:
            inputs: the first ``[batch, T, ...]`` input batch (tensor or array).
        """
        if not self.built:
            self.build(tuple(inputs.shape))

    # -- the time loop --------------------------------------------------------
    def initial_states(self, batch_size):
        return [layer.get_initial_state(batch_size) for layer in self.spiking_layers]

    def effective_kernels(self):
        """Kernels as the neurons see them, computed once per batch."""
        return [layer.effective_kernel() for layer in self.spiking_layers]

    def forward_step(self, x_t, states, kernels, training=False):
        """Run every layer for one time step.

        Returns ``(logits, new_states, records, features)``: the readout's
        logits ``z[t]`` (float32), the new ``(u, o)`` of each spiking layer, one
        ``StepRecord`` per spiking layer and the readout's input.
        """
        records, new_states = [], []
        spiking_index = 0
        h = x_t
        for layer in self.blocks[:-1]:
            if isinstance(layer, SpikingLayer):
                u_prev, o_prev = states[spiking_index]
                # Mixed precision: the synapse runs in the layer's compute
                # dtype; membrane, threshold and spikes stay in the state's
                # dtype (float32). Both casts vanish under float32.
                compute = layer.compute_dtype
                current = layer.synapse(tf.cast(h, compute), tf.cast(kernels[spiking_index], compute))
                current = tf.cast(current, u_prev.dtype)
                u, o = neurons.lif_step(u_prev, o_prev, current, layer.gamma, layer.v_th, layer.reset)
                records.append(StepRecord(h, u, o))
                new_states.append((u, o))
                spiking_index += 1
                h = o
            else:
                h = layer(h, training=training)
        return tf.cast(self.readout(h), tf.float32), new_states, records, h

    def time_loop(self, inputs, body, carry):
        """Symbolic loop over the T steps of ``inputs`` ([batch, T, ...]).

        ``body(t, x_t, states, carry) -> (states, carry)``; returns the
        final carry. States start at zero.
        """
        inputs = tf.cast(inputs, self.compute_dtype)
        steps = inputs.shape[1]
        if steps is None:
            steps = tf.shape(inputs)[1]
        states = self.initial_states(tf.shape(inputs)[0])

        def loop_body(t, states, carry):
            states, carry = body(t, inputs[:, t], states, carry)
            return t + 1, states, carry

        # parallel_iterations=1: the steps are sequential anyway; letting the
        # loop run ahead only computes later steps' first-layer currents early
        # and holds them, so TESS's memory would grow with T (up to 10 steps).
        _, _, carry = tf.while_loop(
            lambda t, *_: t < steps,
            loop_body,
            (tf.constant(0), states, carry),
            maximum_iterations=steps,
            parallel_iterations=1,
        )
        return carry

    def run_sequence(self, inputs, labels=None, training=False):
        """Forward over T steps without learning.

        Returns ``(logits_sum, cross_entropy_sum, spike_rates)``:
        ``sum_t z[t]`` [batch, C]; the per-step cross-entropy summed over time
        and batch (0 when no labels); the mean firing rate of each spiking
        layer over time, batch and neurons.
        """
        kernels = self.effective_kernels()
        batch = tf.shape(inputs)[0]
        targets = None if labels is None else tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)

        def body(t, x_t, states, carry):
            logits_sum, ce_sum, spike_sums = carry
            logits, states, records, _ = self.forward_step(x_t, states, kernels, training=training)
            if targets is not None:
                ce_sum += tf.reduce_sum(
                    tf.nn.softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
                )
            spike_sums = [s + tf.reduce_mean(r.spikes) for s, r in zip(spike_sums, records)]
            return states, (logits_sum + logits, ce_sum, spike_sums)

        carry = (
            tf.zeros((batch, self.num_classes)),
            tf.constant(0.0),
            [tf.constant(0.0) for _ in self.spiking_layers],
        )
        logits_sum, ce_sum, spike_sums = self.time_loop(inputs, body, carry)
        steps = tf.cast(tf.shape(inputs)[1], tf.float32)
        return logits_sum, ce_sum, [s / steps for s in spike_sums]

    # -- Keras entry points ------------------------------------------------------
    def call(self, inputs, training=False):
        logits_sum, _, _ = self.run_sequence(inputs, training=training)
        return logits_sum

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _update_metrics(self, cross_entropy_sum, labels, logits_sum, inputs):
        batch = tf.cast(tf.shape(inputs)[0], tf.float32)
        steps = tf.cast(tf.shape(inputs)[1], tf.float32)
        # Weighted by the batch size: the running loss is the mean over
        # samples even when batches (or replicas' slices of one under
        # tf.distribute) differ in size, and an empty slice adds nothing.
        self.loss_tracker.update_state(tf.math.divide_no_nan(cross_entropy_sum, batch * steps), sample_weight=batch)
        self.accuracy_tracker.update_state(labels, logits_sum)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        inputs, labels = data[0], data[1]
        self.build_on_first_use(inputs)
        grads, cross_entropy_sum, logits_sum = self.rule.compute_gradients(self, inputs, labels)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update_metrics(cross_entropy_sum, labels, logits_sum, inputs)

    def test_step(self, data):
        inputs, labels = data[0], data[1]
        self.build_on_first_use(inputs)
        logits_sum, cross_entropy_sum, _ = self.run_sequence(inputs, labels)
        return self._update_metrics(cross_entropy_sum, labels, logits_sum, inputs)

    # -- serialisation ---------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "layers": [keras.saving.serialize_keras_object(layer) for layer in self.blocks],
            "rule": keras.saving.serialize_keras_object(self.rule),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layers = [keras.saving.deserialize_keras_object(c, custom_objects=custom_objects) for c in config.pop("layers")]
        rule = keras.saving.deserialize_keras_object(config.pop("rule"), custom_objects=custom_objects)
        return cls(layers, rule=rule, **config)
