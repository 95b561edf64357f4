"""Code generation goes through the layer-kind registry (export/layers/).

``codegen.engine_context`` only walks the layers and asks each layer's kind for its
part (``LayerKind.engine_context``, ``engine_defaults``, ``buffer_names``): a kind
registered in ``KINDS`` and nowhere else gets asked, in the layer order, with the walk's
shared state, and what it adds (calls, buffers, template values, the next layer's
input) lands in the context; codegen.py names no kind. engine_extras.py (layer names,
model id, saved-state size) asks the kinds too (``LayerKind.model_id_parts``,
``state_bytes``) and names none either. That the generated files did not change with
either move was checked byte for byte against the previous codegen.py / engine_extras.py
(see the commits); test_export_engine.py checks the generated engine against the golden model.
"""

import ast
import dataclasses
from pathlib import Path
from typing import ClassVar

import pytest
from test_export_engine import small_model

from tess_keras.export import codegen, engine_extras
from tess_keras.export import layers as layer_kinds
from tess_keras.export.layers.base import LayerKind
from tess_keras.export.spec import build_spec


@dataclasses.dataclass
class ProbeSpec:
    """A throwaway kind's spec: a layer passing spikes through its own buffer."""

    kind: ClassVar[str] = "probe"
    name: str
    in_shape: tuple
    out_shape: tuple


class ProbeKind(LayerKind):
    """A kind codegen has never heard of: it records what the walk hands it."""

    name = "probe"
    keras_name = "Probe"
    spec_type = ProbeSpec

    def __init__(self):
        self.asked = []

    def accepts(self, block):
        return False

    def lower(self, block, ctx):
        raise AssertionError("not lowered in this test")

    def describe(self, layer):
        return f"{layer.name}: probe {list(layer.in_shape)}"

    def golden_step(self, engine, layer, x, labels):
        return x

    def engine_defaults(self, spec):
        return {"probes": [], "probe_flag": False}

    def engine_context(self, layer, gen):
        self.asked.append((layer, gen.layer_index, gen.current, gen.current_type, gen.source))
        c = self.c_symbol(layer)
        values = dict(c=c, N=layer.out_shape[0])
        index = gen.append("probes", values)
        gen.values["probe_flag"] = True
        gen.call("TESS_CALL_PROBE", index, f"{c}_step({gen.current})")
        gen.buffer(f"{layer.name}.s", f"{c}_s", layer.out_shape[0], 1)
        gen.at_least("max_neurons", 10_000)
        gen.output(f"{c}_s", ("TESS_SOURCE_PROBE", index))
        return values

    def buffer_names(self, layer):
        return [f"{layer.name}.s"], [], []


@pytest.fixture(scope="module")
def spec():
    """conv -> pool -> conv -> flatten -> dense -> readout, all learning, the first conv's
    LSG on the pool's output (its learn call waits for the pool's)."""
    return build_spec(small_model(), 1 / 127, time_steps=2, learning_rate=0.05)


@pytest.fixture
def probe(monkeypatch):
    kind = ProbeKind()
    monkeypatch.setitem(layer_kinds.KINDS, kind.name, kind)
    return kind


def with_probe(spec, after):
    """``spec`` with a probe layer inserted after the layer named ``after``."""
    position = [layer.name for layer in spec.layers].index(after) + 1
    shape = tuple(spec.layers[position - 1].out_shape)
    layer = ProbeSpec("pr", shape, shape)
    return dataclasses.replace(spec, layers=spec.layers[:position] + [layer] + spec.layers[position:]), layer


def test_codegen_asks_a_kind_registered_only_in_the_table(spec, probe):
    plain = codegen.engine_context(spec)
    probed_spec, layer = with_probe(spec, "d1")
    context = codegen.engine_context(probed_spec)
    # Asked once, for its layer, at its place, on the output of the layer before it.
    assert probe.asked == [(layer, 5, "d1_o", "uint8_t", ("TESS_SOURCE_SPIKES", 2))]
    # Its call comes after d1's, and the readout reads the probe's output.
    assert context["calls"] == plain["calls"][:-1] + ["pr_step(d1_o)", "out_step(pr_s, learn, label)"]
    probe_call, readout_call = context["call_table"][-2:]
    assert (probe_call["op"], probe_call["layer"], probe_call["source"], probe_call["source_index"]) == (
        "TESS_CALL_PROBE", 5, "TESS_SOURCE_SPIKES", 2)
    assert (readout_call["layer"], readout_call["source"], readout_call["source_index"]) == (6, "TESS_SOURCE_PROBE", 0)
    assert context["readout_layer"] == plain["readout_layer"] + 1
    # Its buffer sits between d1's and the readout's; its template values and sizes are there.
    names = [b["name"] for b in context["buffers"]]
    assert [n for n in names if n != "pr.s"] == [b["name"] for b in plain["buffers"]]
    assert names[names.index("pr.s") - 1 : names.index("pr.s") + 2] == ["d1.g", "pr.s", "out.w"]
    assert context["probes"] == [dict(c="pr", N=12)] and context["probe_flag"] is True
    assert context["max_neurons"] == 10_000 and plain["max_neurons"] < 10_000
    assert context["layer_lines"][5] == "pr: probe [12]"
    step, grad, weight = codegen.buffer_names(probed_spec)
    plain_step = codegen.buffer_names(spec)[0]
    assert step == plain_step[: plain_step.index("logits")] + ["pr.s"] + plain_step[plain_step.index("logits"):]
    assert (grad, weight) == codegen.buffer_names(spec)[1:]


def extras(spec):
    """``engine_extras.extras_context`` as ``codegen.write_engine`` calls it."""
    return engine_extras.extras_context(spec)


def test_engine_extras_ask_a_kind_registered_only_in_the_table(spec, probe, monkeypatch, tmp_path):
    """The layer names, the model id and the saved state's size take the probe's part from
    the probe's kind; the engine renders with it."""
    plain = extras(spec)
    probed_spec, layer = with_probe(spec, "d1")
    probed = extras(probed_spec)
    assert [row["name"] for row in probed["layers"]] == [l.name for l in spec.layers[:5]] + ["pr", "out"]
    # No weights (LayerKind's defaults): nothing saved, but a state of the plain model is foreign.
    assert probed["state_bytes"] == plain["state_bytes"] and probed["model_id"] != plain["model_id"]
    asked = []
    monkeypatch.setattr(probe, "state_bytes", lambda layer: asked.append(layer) or 12, raising=False)
    monkeypatch.setattr(probe, "model_id_parts", lambda layer: [b"probe", bytes(layer.out_shape)], raising=False)
    own = extras(probed_spec)
    assert asked == [layer]
    assert own["state_payload_bytes"] == plain["state_payload_bytes"] + 12
    assert own["state_bytes"] == plain["state_bytes"] + 12
    assert own["model_id"] not in (plain["model_id"], probed["model_id"])
    codegen.write_engine(probed_spec, tmp_path)
    assert f"#define TESS_STATE_BYTES {own['state_bytes']}u" in (tmp_path / "tess_engine.h").read_text()
    text = (tmp_path / "tess_engine.cc").read_text()
    assert '"d1", "pr", "out" };' in text and f"0x{own['model_id']:08X}u" in text


def test_the_saved_state_holds_what_each_layer_learns(spec):
    """Learning conv/dense: int8 weights; learning readout: int8 weights and int32 biases;
    frozen layers and layers without weights: nothing."""
    learned = sum(int(layer.weights.size) for layer in spec.learnable) + 4 * spec.num_classes
    values = extras(spec)
    assert values["state_payload_bytes"] == learned
    assert values["state_bytes"] == engine_extras.STATE_HEADER_BYTES + learned + engine_extras.STATE_CRC_BYTES
    frozen = dataclasses.replace(spec, layers=[dataclasses.replace(layer, learn=False) if hasattr(layer, "learn")
                                               else layer for layer in spec.layers])
    assert extras(frozen)["state_payload_bytes"] == 0
    assert extras(frozen)["model_id"] != values["model_id"]  # frozen weights are hashed


def test_a_registered_kind_without_layers_gives_its_defaults(spec, probe):
    context = codegen.engine_context(spec)
    assert probe.asked == []
    assert context["probes"] == [] and context["probe_flag"] is False


def test_each_layer_is_handed_to_its_own_kind_in_order(spec, monkeypatch):
    asked = []
    for name, kind in layer_kinds.KINDS.items():
        def spy(layer, gen, kind=kind, original=kind.engine_context):
            asked.append((layer.name, kind.name, gen.layer_index))
            return original(layer, gen)

        monkeypatch.setattr(kind, "engine_context", spy)
    context = codegen.engine_context(spec)
    assert asked == [(layer.name, layer.kind, i) for i, layer in enumerate(spec.layers)]
    # The first conv learns on the pool's output: its learn call waits for the pool's step.
    assert context["calls"][:3] == ["c1_step(input, learn, label)", "p1_step(c1_o)", "if (learn) c1_learn(input, label)"]
    learn = context["call_table"][2]
    assert (learn["op"], learn["layer"], learn["block"], learn["source"]) == ("TESS_CALL_LEARN", 0, 0, "TESS_SOURCE_INPUT")


def test_a_call_waiting_for_a_layer_before_it_is_an_internal_error(spec):
    layers = list(spec.layers)
    layers[2] = dataclasses.replace(layers[2], lsg_from="p1")  # c2's LSG on the pool before it
    with pytest.raises(codegen.ExportError, match="internal: a call of tess_step waits for p1, which does not follow"):
        codegen.engine_context(dataclasses.replace(spec, layers=layers))


@pytest.mark.parametrize("module, allowed", [
    (codegen, {"layers", "ExportError", "c_name", "extras_context"}),
    (engine_extras, {"layers"}),
])
def test_codegen_names_no_layer_kind(module, allowed):
    """No isinstance/type tests, no spec field ``kind``, no spec class, no kind name and no
    kind-filtering ``EngineSpec`` property in codegen.py and engine_extras.py."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module.startswith("tess_keras") for alias in node.names}
    spec_types = {kind.spec_type.__name__ for kind in layer_kinds.KINDS.values()}
    assert not names & ({"isinstance", "type"} | spec_types)
    assert not attributes & {"kind", "spiking", "readout", "spec_type"}
    assert not strings & set(layer_kinds.KINDS)
    assert not imported & spec_types
    assert imported <= allowed


def test_the_generated_files_name_what_they_were_generated_from(spec, tmp_path):
    codegen.write_engine(spec, tmp_path, source="runs/digits/model.keras")
    assert (tmp_path / "tess_engine.cc").read_text().splitlines()[0] == (
        "// tess_engine.cc: generated by `tess export` from runs/digits/model.keras. Do not edit.")
    assert "generated by `tess export` from runs/digits/model.keras." in (tmp_path / "tess_engine.h").read_text()


def test_each_named_buffer_is_described_as_the_engine_declares_it(spec, tmp_path):
    """A kind's buffer entries (element size and count, which the host harness's dump is parsed
    with) match the arrays the generated tess_engine.cc declares."""
    import re

    codegen.write_engine(spec, tmp_path)
    text = (tmp_path / "tess_engine.cc").read_text()
    declared = {m.group(3): (int(m.group(4)), int(m.group(2)) // 8)
                for m in re.finditer(r"^(?:const )?(u?int(8|16|32))_t (\w+)\[(\d+)\]", text, re.M)}
    buffers = codegen.engine_context(spec)["buffers"]
    assert len(buffers) == 3 * 6 + 4 + 2  # c1, c2, d1: u o w q h g; out: w b g gb; logits, logit_sum
    for entry in buffers:
        assert declared[entry["symbol"]] == (entry["count"], entry["bytes"]), entry["name"]
