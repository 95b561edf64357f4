"""Render the C++ engine and the host harness from Jinja2 templates.

``engine_context`` walks the spec's layers and asks each layer's kind (the registry
``layers.KINDS``) for its part: template values, calls of ``tess_step``, named
buffers (``LayerKind.engine_context``, with the walk's shared state ``EngineWalk``).
Nothing here depends on which kinds exist.
"""

from pathlib import Path

import jinja2
import numpy as np

from tess_keras.export import layers
from tess_keras.export.layers.base import ExportError, c_name  # noqa: F401  (c_name: re-exported)

TEMPLATES = Path(__file__).parent / "templates"
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "firmware" / "runtime"
RUNTIME_HEADER = "tess_runtime.h"  # the runtime's first header: its folder is a runtime
RUNTIME_SUFFIXES = (".cc", ".c")  # its sources, every one compiled (as the export's CMakeLists.txt globs them)
ENGINE_FILES = ("tess_engine.h", "tess_engine.cc")


def runtime_dir():
    """The fixed runtime (firmware/runtime of the repository checkout); an export carries a copy
    in its ``runtime/`` (``package.write_package``)."""
    if not (RUNTIME_DIR / RUNTIME_HEADER).exists():
        raise ExportError(f"the engine runtime {RUNTIME_DIR / RUNTIME_HEADER} is missing; run from a tess-keras checkout.")
    return RUNTIME_DIR


def runtime_sources(runtime):
    """The sources of the runtime folder ``runtime``, sorted."""
    return sorted(p for p in Path(runtime).iterdir() if p.suffix in RUNTIME_SUFFIXES and p.is_file())


def c_array(values, per_line=16):
    values = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(values[i : i + per_line]) for i in range(0, len(values), per_line)]
    return ",\n".join("    " + line for line in lines)


def _environment():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["carray"] = c_array
    return env


def layer_summary(layer):
    """One line naming the layer, its kind, shapes and whether it learns (each kind's ``describe``)."""
    return layers.for_spec(layer).describe(layer)


class EngineWalk:
    """What ``engine_context``'s walk over the layers shares with each kind's ``engine_context``.

    Attributes:
        spec: the ``EngineSpec``.
        layer_index: the place in ``spec.layers`` of the layer being walked.
        current: the C expression of the next layer's input (``input``, then a layer's output).
        current_type: its C element type.
        source: where ``tess_step`` finds it: (TESS_SOURCE_*, index).
        values: the template values the kinds set (every kind's ``engine_defaults`` first).
        calls: the C statements of a time step, in order.
        call_table: one dict per call (``kCalls``).
        buffers: the named buffers (``tess_buffers``), dicts of name, symbol, count, bytes.
    """

    def __init__(self, spec):
        self.spec = spec
        self.layer_index = 0
        self.current, self.current_type, self.source = "input", "int8_t", ("TESS_SOURCE_INPUT", 0)
        self.values = {}
        for kind in layers.KINDS.values():
            self.values.update(kind.engine_defaults(spec))
        self.calls, self.call_table, self.buffers = [], [], []
        self.waiting = {}  # layer name -> the calls that run right after its own
        self._layers = {layer.name: layer for layer in spec.layers}

    def layer(self, name):
        """The spec of the layer ``name``."""
        return self._layers[name]

    def ordinal(self, name):
        """The place of the layer ``name`` among the layers of its kind (its index in the kind's tables)."""
        kind = layers.for_spec(self._layers[name])
        before = self.spec.layers[: list(self._layers).index(name)]
        return sum(layers.for_spec(layer) is kind for layer in before)

    def append(self, key, item):
        """Add ``item`` to the template list ``key``; returns its index there."""
        self.values.setdefault(key, []).append(item)
        return len(self.values[key]) - 1

    def at_least(self, key, value):
        """Raise the template size ``key`` (a scratch buffer's length...) to ``value``."""
        self.values[key] = max(self.values[key], value) if key in self.values else value

    def call(self, op, index, text, block=-1, after=None):
        """A call of ``tess_step`` by the current layer on ``current``; ``after``: the name of a
        later layer whose own call it must follow (None: now)."""
        entry = dict(op=op, index=index, source=self.source[0], source_index=self.source[1], block=block,
                     layer=self.layer_index, text=text)
        if after:
            self.waiting.setdefault(after, []).append(entry)
        else:
            self._emit(entry)
        return entry

    def buffer(self, name, symbol, count, bytes_):
        """A named buffer of ``count`` elements of ``bytes_`` bytes."""
        self.buffers.append(dict(name=name, symbol=symbol, count=count, bytes=bytes_))

    def output(self, current, source, current_type=None):
        """The current layer's output is the next layer's input."""
        self.current, self.source = current, source
        self.current_type = current_type or self.current_type

    def _emit(self, entry):
        self.calls.append(entry["text"])
        self.call_table.append(entry)

    def walk(self):
        """Ask every layer's kind for its part, in order."""
        for index, layer in enumerate(self.spec.layers):
            self.layer_index = index
            layers.for_spec(layer).engine_context(layer, self)
            for entry in self.waiting.pop(layer.name, []):
                self._emit(entry)
        if self.waiting:
            raise ExportError(f"internal: a call of tess_step waits for {', '.join(self.waiting)}, which does not "
                              "follow the layer that made it.")
        return self


def engine_context(spec, source="a Keras model"):
    """Everything the engine templates read, computed from an ``EngineSpec``."""
    gen = EngineWalk(spec).walk()
    dims = list(zip(("HEIGHT", "WIDTH", "CHANNELS"), spec.input_shape)) if len(spec.input_shape) == 3 else []
    return dict(
        gen.values,
        source=source,
        calls=gen.calls,
        call_table=gen.call_table,
        buffers=gen.buffers,
        num_classes=spec.num_classes,
        time_steps=spec.time_steps,
        input_size=spec.input_size,
        input_dims=dims,
        input_scale=spec.input_scale,
        seed=spec.seed,
        t_l=spec.t_l,
        lsg_source=spec.lsg_source,
        learning_rate=spec.learning_rate,
        learn_names=", ".join(layer.name for layer in spec.learnable),
        learnable_weights=sum(int(layer.weights.size) for layer in spec.learnable),
        layer_lines=[layer_summary(layer) for layer in spec.layers],
        any_learn=bool(spec.learnable),
    )


def buffer_names(spec):
    """(step, grad, weight) buffer names in the order the harness writes them (each kind's ``buffer_names``)."""
    step, grad, weight = [], [], []
    for layer in spec.layers:
        names = layers.for_spec(layer).buffer_names(layer)
        step, grad, weight = step + names[0], grad + names[1], weight + names[2]
    return step, grad, weight


def write_engine(spec, out_dir, source="a Keras model"):
    """Write tess_engine.h/.cc into ``out_dir``. They compile with the fixed runtime: the
    export's ``runtime/`` (``package.write_package``), else the checkout's (``runtime_dir``)."""
    out_dir = Path(out_dir)
    env = _environment()
    context = engine_context(spec, source)
    from tess_keras.export.engine_extras import extras_context

    context.update(extras_context(spec))
    for name in ENGINE_FILES:
        (out_dir / name).write_text(env.get_template(name + ".j2").render(**context))
    return [out_dir / n for n in ENGINE_FILES]


def write_harness(spec, out_dir):
    step, grad, weight = buffer_names(spec)
    path = Path(out_dir) / "host_harness.cc"
    path.write_text(_environment().get_template("host_harness.cc.j2").render(step_names=step, grad_names=grad, weight_names=weight))
    return path
