"""The interface every layer kind of the exporter implements, and the lowering context.

A kind (``LayerKind``) is everything the exporter knows about one kind of layer: how
a Keras layer of that kind lowers to its integer spec (``spec.build_spec``), its step
in the golden model (``golden.GoldenEngine``), its buffers, its row of the memory
budget (``budget.engine_rows``) and its part of the TFLite-Micro step graph
(``tflm.StepGraph``) and its part of the generated engine (``codegen.engine_context``).
Those drivers loop over the layers and call the kind's methods; the registry
(``tess_keras.export.layers``) maps a kind's name to its instance.
"""

import abc
import dataclasses
import re

import numpy as np


class ExportError(Exception):
    """A model or option the exporter cannot express. The message names it and says what to do."""


@dataclasses.dataclass
class Lowering:
    """What lowering one Keras layer may read: the tensor it receives and the export's options.

    Attributes:
        shape: per-step shape of the incoming tensor (no batch axis).
        spikes: whether it holds binary spikes (False: the int8 model input).
        first: no layer was lowered yet, so this one reads the int8 input.
        following: the next Keras block, None for the last.
        learn: names of the layers that learn on device.
        rule: the TESS rule's engine constants (``spec.rule_constants``).
        num_classes: classes of the readout.
        input_scale: real value of one input LSB.
        learning_rate: on-device SGD learning rate.
    """

    shape: tuple
    spikes: bool
    first: bool
    following: object
    learn: set
    rule: dict
    num_classes: int
    input_scale: float
    learning_rate: float


@dataclasses.dataclass
class BudgetRow:
    """One line of the memory table.

    Attributes:
        name: layer or item.
        flash: bytes in flash (constants, frozen weights, the initial image of learnable weights).
        ram: bytes in RAM (learnable weights, state, traces, accumulators, buffers).
        detail: what the bytes are.
    """

    name: str
    flash: int
    ram: int
    detail: str


def c_name(name):
    """``name`` as a C identifier (the prefix of a layer's symbols in the generated engine)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return name if not name[0].isdigit() else "l_" + name


def window_output(size, window, stride, padding):
    """Output length and leading padding of a Keras conv/pool window along one axis.

    Args:
        size: input length.
        window: kernel or pool length.
        stride: step between windows.
        padding: ``"same"`` or ``"valid"``.
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        return out, total // 2
    return (size - window) // stride + 1, 0


class LayerKind(abc.ABC):
    """One kind of layer. Subclasses set the class attributes and implement the abstract
    methods; the other methods default to those of a layer without weights or state.

    Attributes:
        name: the registry key, equal to the ``kind`` of the specs it lowers to.
        keras_name: the Keras layer class it lowers, as error messages name it.
        spec_type: the dataclass of its integer spec.
        has_weights: it has weights, so it may learn on device (``--learn``).
        emits_spikes: its output is binary spikes.
    """

    name = None
    keras_name = None
    spec_type = None
    has_weights = False
    emits_spikes = False

    # -- lowering (spec.build_spec) ------------------------------------------------
    @abc.abstractmethod
    def accepts(self, block):
        """Whether the Keras layer ``block`` is of this kind."""

    @abc.abstractmethod
    def lower(self, block, ctx):
        """The integer spec of ``block`` given the ``Lowering`` context ``ctx``.

        Raises:
            ExportError: naming the layer and what to change when the engine cannot express it.
        """

    @abc.abstractmethod
    def describe(self, layer):
        """One line on the spec ``layer`` for the generated code's comments and the export log:
        name, kind, shapes and whether it learns (codegen's ``layer_summary`` text), for
        code generation through the registry: ``layers.for_spec(layer).describe(layer)``."""

    # -- golden model (golden.GoldenEngine) ---------------------------------------------
    def golden_init(self, engine, layer):
        """Load the layer's parameters into ``engine`` (``engine.weights``...)."""

    def golden_zero_grads(self, engine, layer):
        """Clear the layer's update accumulators (``engine.grads``...)."""

    def golden_reset(self, engine, layer):
        """Zero the layer's state at the start of a sample (``tess_reset``)."""

    @abc.abstractmethod
    def golden_step(self, engine, layer, x, labels):
        """One time step of the layer on its input ``x`` [batch, ...]; returns its output.
        ``labels``: int [1] when the engine learns this step, else None."""

    def golden_update(self, engine, layer):
        """Apply the accumulated update to a learning layer (``tess_apply_update``)."""

    def learned_bytes(self, engine, layer):
        """The parameters the layer learns on device as the engine stores them, b"" when it is
        frozen (the state hash reads them)."""
        return b""

    def step_buffers(self, engine, layer):
        """What the engine exposes of the layer after each step: name -> array in C type."""
        return {}

    def grad_buffers(self, engine, layer):
        """The layer's update accumulators: name -> array in C type."""
        return {}

    def weight_buffers(self, engine, layer):
        """The layer's learnable parameters: name -> array in C type."""
        return {}

    # -- memory (budget.engine_rows) ---------------------------------------------------
    def budget_row(self, layer):
        """The layer's ``BudgetRow``, or None when it needs no memory of its own."""
        return None

    # -- TFLite-Micro (tflm.StepGraph) -------------------------------------------------
    def tflm_constants(self, block):
        """Tensors the step graph computes once from ``block`` (its kernel...)."""
        return None

    def tflm_state_shape(self, block):
        """Shape of the layer's membrane and spike state tensors, None when it has none."""
        return None

    def tflm_step(self, block, constants, h, state):
        """One float time step on ``h``: ``(output, new_state)``; ``state`` and ``new_state``
        are ``(u, o)`` for a layer with a state shape, else None."""
        return block(h), None

    # -- generated engine (codegen.engine_context) -------------------------------------
    def engine_defaults(self, spec):
        """Template values the engine templates read even when ``spec`` has no layer of this
        kind (empty lists, sizes' floors, False flags); ``engine_context`` adds to them."""
        return {}

    @abc.abstractmethod
    def engine_context(self, layer, gen):
        """The layer's part of the generated engine, added to the walk ``gen``
        (``codegen.EngineWalk``): its template values, its calls of ``tess_step`` (which
        read ``gen.current``), its named buffers, and ``gen.current`` for the next layer.
        Returns the layer's template values (None for a layer without code)."""

    def buffer_names(self, layer):
        """``(step, grad, weight)``: names of the buffers the host harness writes for the
        layer after every step, and after a learning sample (accumulators, parameters)."""
        return [], [], []

    def c_symbol(self, layer):
        """The C identifier that prefixes the layer's symbols in the generated engine."""
        return c_name(layer.name)

    # -- saved state and model id (engine_extras.extras_context) ---------------------------
    def state_bytes(self, layer):
        """Bytes of the layer's learned parameters in a saved state (``tess_save_state``): its
        int8 weights when it learns, 0 when it is frozen or has no weights."""
        return int(layer.weights.size) if self.has_weights and layer.learn else 0

    def model_id_parts(self, layer):
        """What the model id (the CRC32 that refuses a state saved by another model) reads of the
        layer: its spec type, name and whether it learns; with weights, their shape and, when
        frozen (so not in the saved state), their values."""
        learn = self.has_weights and layer.learn
        parts = [f"|{type(layer).__name__}:{layer.name}:{int(learn)}".encode()]
        if self.has_weights:
            parts.append(np.asarray(layer.weights.shape, np.int64).tobytes())
            if not layer.learn:
                parts.append(np.ascontiguousarray(layer.weights, np.int8).tobytes())
        return parts
