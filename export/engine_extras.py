"""Template values for the engine's library functions: the per-layer profile
and the saved-state format (``tess_save_state`` / ``tess_load_state``).

The layer table lists every layer of the spec (flatten included: it has no
code, so its profile row reads zero); ``call_layers`` says which layer each
call of ``tess_step`` belongs to, so the engine can tell a profile hook when
the work moves from one layer to the next.
"""

import re
import zlib

import numpy as np

from tess_keras.export.spec import FlattenSpec, PoolSpec, ReadoutSpec, SpikingSpec

# Saved state: magic "TESS", u16 version, u16 header bytes, u32 model id,
# u32 payload bytes, u32 generator counter; payload; u32 CRC32 of all before it.
STATE_FORMAT_VERSION = 1
STATE_HEADER_BYTES = 20
STATE_CRC_BYTES = 4

_CALL = re.compile(r"^(?:if \(learn\) )?(\w+)_(?:step|learn)\(")


def _c_name(name):
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return name if not name[0].isdigit() else "l_" + name


def _layer_table(spec):
    """One dict per spec layer: name, c, events kind and the C expression of its input."""
    table, current = [], "input"
    for layer in spec.layers:
        c = _c_name(layer.name)
        row = dict(name=layer.name, c=c, src=current, events="none")
        if isinstance(layer, SpikingSpec):
            row.update(events=layer.kind, NIN=layer.num_inputs, CO=layer.out_channels)
            if layer.kind == "conv":
                h, w, ci = layer.in_shape
                oh, ow, _ = layer.out_shape
                row.update(H=h, W=w, CI=ci, OH=oh, OW=ow, K=layer.kernel_size, S=layer.stride, PT=layer.pad[0],
                           PL=layer.pad[1])
            current = f"{c}_o"
        elif isinstance(layer, PoolSpec):
            current = f"{c}_out"
        elif isinstance(layer, ReadoutSpec):
            row.update(events="dense", NIN=layer.in_size, CO=spec.num_classes)
        elif not isinstance(layer, FlattenSpec):
            raise TypeError(f"no profile row for layer {layer.name!r} of type {type(layer).__name__}")
        table.append(row)
    return table


def _model_id(spec):
    """CRC32 of the layer structure and every frozen parameter: a state saved by another model differs."""
    crc = zlib.crc32(f"{spec.num_classes} {spec.time_steps} {spec.input_size}".encode())
    for layer in spec.layers:
        crc = zlib.crc32(f"|{type(layer).__name__}:{layer.name}:{int(getattr(layer, 'learn', False))}".encode(), crc)
        weights = getattr(layer, "weights", None)
        if weights is not None:
            crc = zlib.crc32(np.asarray(weights.shape, np.int64).tobytes(), crc)
            if not layer.learn:
                crc = zlib.crc32(np.ascontiguousarray(weights, np.int8).tobytes(), crc)
    return crc & 0xFFFFFFFF


def state_payload_bytes(spec):
    """Bytes of learnable parameters in a saved state: int8 weights, readout bias as int32."""
    total = 0
    for layer in spec.learnable:
        total += int(layer.weights.size)
        if isinstance(layer, ReadoutSpec):
            total += 4 * spec.num_classes
    return total


def extras_context(spec, calls):
    """Template values added to ``codegen.engine_context``.

    Args:
        spec: the ``EngineSpec``.
        calls: the call list of ``tess_step`` (C statements), in order.

    Returns:
        dict with ``layers`` (the layer table), ``call_layers`` (layer index
        of each call), ``update_layers`` (index of each learnable layer, in
        update order), ``model_id``, ``state_version``, ``state_header_bytes``
        and ``state_bytes``.
    """
    table = _layer_table(spec)
    index = {row["c"]: i for i, row in enumerate(table)}
    call_layers = []
    for call in calls:
        match = _CALL.match(call)
        if match is None or match.group(1) not in index:
            raise ValueError(f"internal: cannot tell which layer the engine call {call!r} belongs to")
        call_layers.append(index[match.group(1)])
    spiking_updates = [index[_c_name(layer.name)] for layer in spec.learnable if isinstance(layer, SpikingSpec)]
    readout_updates = [index[_c_name(layer.name)] for layer in spec.learnable if isinstance(layer, ReadoutSpec)]
    payload = state_payload_bytes(spec)
    return dict(
        layers=table,
        call_layers=call_layers,
        spiking_update_layers=spiking_updates,
        readout_update_layer=readout_updates[0] if readout_updates else -1,
        model_id=_model_id(spec),
        state_version=STATE_FORMAT_VERSION,
        state_header_bytes=STATE_HEADER_BYTES,
        state_payload_bytes=payload,
        state_bytes=STATE_HEADER_BYTES + payload + STATE_CRC_BYTES,
    )
