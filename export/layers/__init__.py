"""The layer kinds the exporter accepts, one module each, in one table.

Each module (``conv``, ``dense``, ``maxpool``, ``flatten``, ``readout``) holds its
kind's integer spec, its lowering from the Keras layer, its golden step and buffers,
its memory row, its part of the TFLite-Micro step graph and of the generated engine,
as a ``LayerKind`` (``base``). The drivers (``spec.build_spec``, ``golden.GoldenEngine``,
``budget.engine_rows``, ``tflm.StepGraph``, ``codegen.engine_context``) loop over the
layers and dispatch here. A new kind is a module with a ``LayerKind`` and one entry
in ``KINDS``.
"""

from tess_keras.export.layers import conv, dense, flatten, maxpool, readout
from tess_keras.export.layers.base import ExportError, LayerKind

# Keras layers are matched in this order; a kind's name is its specs' ``kind``.
KINDS = {kind.name: kind for kind in (conv.KIND, dense.KIND, maxpool.KIND, flatten.KIND, readout.KIND)}


def supported():
    """The Keras layer classes the engine supports, for error messages: "A, B and C"."""
    names = [kind.keras_name for kind in KINDS.values()]
    return ", ".join(names[:-1]) + " and " + names[-1]


def for_block(block):
    """The kind of the Keras layer ``block``.

    Raises:
        ExportError: naming the layer when no kind accepts it.
    """
    for kind in KINDS.values():
        if kind.accepts(block):
            return kind
    raise ExportError(
        f"layer {block.name} ({type(block).__name__}) cannot be exported: the on-device engine supports "
        f"{supported()}. Replace or remove {block.name}."
    )


def for_spec(layer):
    """The kind of the integer spec ``layer`` (an ``EngineSpec`` entry)."""
    return KINDS[layer.kind]


__all__ = ["KINDS", "LayerKind", "for_block", "for_spec", "supported"]
