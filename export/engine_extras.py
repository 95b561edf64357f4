"""Template values for the engine's library functions that the walk over the layers
(``codegen.engine_context``) does not make: the layer names (``kLayerNames``, whose
places are the layer indices of the call table the profile hook reports), the model
id and the saved-state format (``tess_save_state`` / ``tess_load_state``).

Each layer's part comes from its kind (``layers.for_spec``): ``state_bytes`` and
``model_id_parts`` (``LayerKind``); nothing here depends on which kinds exist.
"""

import zlib

from tess_keras.export import layers

# Saved state: magic "TESS", u16 version, u16 header bytes, u32 model id,
# u32 payload bytes, u32 generator counter; payload; u32 CRC32 of all before it.
STATE_FORMAT_VERSION = 1
STATE_HEADER_BYTES = 20
STATE_CRC_BYTES = 4


def _model_id(spec):
    """CRC32 of the layer structure and every frozen parameter: a state saved by another model differs."""
    crc = zlib.crc32(f"{spec.num_classes} {spec.time_steps} {spec.input_size}".encode())
    for layer in spec.layers:
        for part in layers.for_spec(layer).model_id_parts(layer):
            crc = zlib.crc32(part, crc)
    return crc & 0xFFFFFFFF


def state_payload_bytes(spec):
    """Bytes of learned parameters in a saved state, in layer order (each kind's ``state_bytes``)."""
    return sum(layers.for_spec(layer).state_bytes(layer) for layer in spec.layers)


def extras_context(spec):
    """Template values added to ``codegen.engine_context``.

    Args:
        spec: the ``EngineSpec``.

    Returns:
        dict with ``layers`` (one row with the ``name`` of every spec layer, flatten
        included: its profile row reads zero), ``model_id``, ``state_version``,
        ``state_header_bytes``, ``state_payload_bytes`` and ``state_bytes``.
    """
    payload = state_payload_bytes(spec)
    return dict(
        layers=[dict(name=layer.name) for layer in spec.layers],
        model_id=_model_id(spec),
        state_version=STATE_FORMAT_VERSION,
        state_header_bytes=STATE_HEADER_BYTES,
        state_payload_bytes=payload,
        state_bytes=STATE_HEADER_BYTES + payload + STATE_CRC_BYTES,
    )
