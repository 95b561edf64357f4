"""From a trained Keras spiking model to the integer engine's parameters.

Everything the generated C++ engine and the Python golden model need is
computed here once, so both read the very same integers. Each layer kind
lowers its Keras layer in its module of ``export/layers/``; ``build_spec``
walks the model and checks what concerns the whole network.

Number formats (see also the README section "Export to Cortex-M"):

- input ``x``: int8, real = x * input_scale (per tensor, symmetric).
- weights: int8 in [-127, 127]; spiking layers have one scale per output
  channel, the readout one scale per tensor; readout bias int32 in units of
  the readout weight scale.
- membrane ``u``: int16 Q4.11 (range [-16, 16), LSB 1/2048), saturating.
- surrogate ``psi(u)``, post trace ``h``, softmax probabilities and errors:
  Q15 (int16/int32).
- pre trace ``q``: int16, ``Q(15-F).F`` of the layer's input unit (one spike,
  or one input LSB for the first layer) with ``F`` = ``trace_frac`` chosen so
  the trace's largest value fits.
- LSG and readout logits for the softmax: int32 Q19.12.
- gradient accumulators: int32, saturating; scale documented per layer.
- real multipliers (current scale, learning rate...) are ``mult * 2**-shift``
  with an int32 ``mult`` (TFLite-Micro style), applied with rounding.
"""

from tess_keras.export import layers as layer_kinds
from tess_keras.export.layers.base import ExportError, Lowering
from tess_keras.export.layers.fixed_point import (  # noqa: F401  (re-exported: the number formats)
    LOGIT_FRAC,
    Q15,
    SURROGATE_SCALE,
    U_FRAC,
    UPDATE_FRAC,
    WEIGHT_MAX,
    quantize_multiplier,
    quantize_multipliers,
    to_q,
)
from tess_keras.export.layers.spiking import adaptive_windows  # noqa: F401  (re-exported)
from tess_keras.export.spec_types import (  # noqa: F401  (re-exported: the layer specs live there)
    GRAD_SHIFT,
    EngineSpec,
    FlattenSpec,
    PoolSpec,
    ReadoutSpec,
    SpikingSpec,
)


def rule_constants(rule):
    """The TESS rule's engine constants (alphas, Q15 lambdas, t_l, lsg_source).

    Raises:
        ExportError: for a rule value the engine cannot express.
    """
    from tess_keras.rules import tess as tess_rule

    defaults = tess_rule.TESS()
    source = rule if isinstance(rule, tess_rule.TESS) else defaults
    constants = {}
    for name in ("alpha_pre", "alpha_post"):
        value = float(getattr(source, name))
        if value not in (-1.0, 0.0, 1.0):
            raise ExportError(
                f"the model's learning rule has {name}={value:g}; the on-device TESS engine supports -1, 0 or +1. "
                f"Retrain with --alpha-post -1, 0 or 1."
            )
        constants[name] = int(value)
    for name in ("lambda_pre", "lambda_post"):
        value = float(getattr(source, name))
        if not 0.0 <= value < 1.0:
            raise ExportError(f"the model's learning rule has {name}={value:g}; the engine needs 0 <= lambda < 1.")
        constants[name] = to_q(value, Q15)
    constants["t_l"] = int(getattr(source, "t_l", 0))
    constants["lsg_source"] = getattr(source, "lsg_source", defaults.lsg_source)
    if constants["lsg_source"] not in ("block", "layer"):
        raise ExportError(
            f"the model's learning rule has lsg_source={constants['lsg_source']!r}; the engine supports 'block' or "
            f"'layer'. Retrain with --lsg-source block or layer."
        )
    return constants


def build_spec(model, input_scale, time_steps, learn=None, learning_rate=0.005, seed=0x7E55):
    """Turn a trained ``SpikingSequential`` into an ``EngineSpec``.

    Args:
        model: a built ``tess_keras.models.SpikingSequential``.
        input_scale: real value of one input LSB (from the representative set).
        time_steps: T.
        learn: names of the layers that learn on device (None: all layers with
            weights).
        learning_rate: on-device SGD learning rate (per sample); the default is
            the exporter's for static images.
        seed: seed of the stochastic-rounding generator.

    Raises:
        ExportError: naming any layer or option the engine cannot express.
    """
    blocks = list(model.blocks)
    kinds = [layer_kinds.for_block(block) for block in blocks]
    weighted = [block.name for block, kind in zip(blocks, kinds) if kind.has_weights]
    if learn is None:
        learn = set(weighted)
    else:
        learn = set(learn)
        unknown = sorted(learn - set(weighted))
        if unknown:
            raise ExportError(
                f"--learn names {', '.join(unknown)}, which the model does not have as a layer with weights; "
                f"choose among: {', '.join(weighted)} (or 'none')."
            )
    rule = rule_constants(model.rule)
    num_classes = int(model.readout.units)
    shape = tuple(int(s) for s in model.step_input_shapes[blocks[0].name][1:])
    input_shape = shape
    layers = []
    spikes = False  # does the current tensor hold binary spikes?
    for index, (block, kind) in enumerate(zip(blocks, kinds)):
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        context = Lowering(shape=shape, spikes=spikes, first=not layers, following=following, learn=learn, rule=rule,
                           num_classes=num_classes, input_scale=input_scale, learning_rate=learning_rate)
        layer = kind.lower(block, context)
        layers.append(layer)
        shape, spikes = tuple(layer.out_shape), spikes or kind.emits_spikes
    if not layers or not isinstance(layers[-1], ReadoutSpec):
        raise ExportError("the model must end with a Readout layer.")
    if not any(isinstance(layer, SpikingSpec) for layer in layers):
        raise ExportError("the model has no spiking layer to export.")
    return EngineSpec(
        input_shape=input_shape,
        input_scale=float(input_scale),
        time_steps=int(time_steps),
        num_classes=num_classes,
        layers=layers,
        learning_rate=float(learning_rate),
        seed=int(seed),
        t_l=rule["t_l"],
        lsg_source=rule["lsg_source"],
    )
