"""NIR interchange: tess -> NIR -> tess, snnTorch-written files, the documented errors,
and an imported snnTorch network on a Cortex-M4 in QEMU."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tess_keras import data

DATA = Path(__file__).parent / "data" / "nir"


def _cli(*args):
    from tess_keras.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _one_paragraph(result):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def digits():
    """The digits test split as the models see it: ([N, T, 8, 8, 1], labels)."""
    from tess_keras import data
    from tess_keras.export.nir_export import test_inputs

    return test_inputs(data.load_dataset("digits", None, None, 0))


def _variety_model(reset_first="zero"):
    """Every layer kind the export writes; strided 'same' and 'valid' convolutions, all three resets."""
    import keras

    from tess_keras.layers import Readout, SpikingConv2D, SpikingDense
    from tess_keras.models import SpikingSequential

    model = SpikingSequential([
        SpikingConv2D(8, 3, strides=2, lsg_pool=2, reset=reset_first, name="c1"),
        SpikingConv2D(8, 3, padding="valid", lsg_pool=1, reset="subtract_after_leak", name="c2"),
        keras.layers.MaxPooling2D(2, name="p"), keras.layers.Flatten(name="f"),
        SpikingDense(12, weight_standardization=False, name="d"), Readout(10, name="r"),
    ])
    model.build((None, None, 8, 8, 1))
    for layer in model.spiking_layers:  # larger weights: plenty of spikes in every layer
        layer.kernel.assign(layer.kernel * 3.0)
    return model


# -- neurons -------------------------------------------------------------------------


def test_reset_variants_follow_their_equations():
    import tensorflow as tf

    from tess_keras import neurons

    rng = np.random.default_rng(0)
    u, o, i = rng.normal(size=50).astype(np.float32), (rng.random(50) > 0.5).astype(np.float32), rng.normal(size=50)
    i = i.astype(np.float32)
    expected = {
        "subtract": 0.5 * (u - 0.6 * o) + i,
        "subtract_after_leak": 0.5 * u + i - 0.6 * o,
        "zero": 0.5 * (1 - o) * u + i,
    }
    for reset, want in expected.items():
        got, spikes = neurons.lif_step(tf.constant(u), tf.constant(o), tf.constant(i), 0.5, 0.6, reset)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(spikes.numpy(), (got.numpy() >= 0.6).astype(np.float32))
    with pytest.raises(ValueError, match="reset must be one of"):
        neurons.check_reset("soft")


def test_reset_is_saved_with_the_model(tmp_path):
    import keras

    model = _variety_model()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert [layer.reset for layer in loaded.spiking_layers] == ["zero", "subtract_after_leak", "subtract"]
    x = np.random.default_rng(1).random((4, 3, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))


# -- export and NIR's reference semantics -------------------------------------------------


@pytest.mark.parametrize("reset_first", ["zero", "subtract"])
def test_export_runs_identically_under_nir_semantics(tmp_path, digits, reset_first):
    import nir

    from tess_keras.export import nir_reference
    from tess_keras.export.nir_export import model_to_nir, to_nir_layout

    x = digits[0][:120]
    model = _variety_model(reset_first)
    nir.write(str(tmp_path / "m.nir"), model_to_nir(model))
    graph = nir.read(str(tmp_path / "m.nir"))
    types = {type(node).__name__ for node in graph.nodes.values()}
    assert {"SumPool2d", "Threshold", "LI", "Scale", "Flatten", "Affine"} <= types
    assert ("LIF" in types) == (reset_first == "zero")
    keras_sum = np.asarray(model(x))
    nir_sum = nir_reference.run_graph(graph, to_nir_layout(x)).sum(axis=1)
    np.testing.assert_allclose(nir_sum, keras_sum, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(nir_sum, -1), np.argmax(keras_sum, -1))


def test_strided_same_convolution_is_written_with_symmetric_padding():
    from tess_keras.export.nir_export import model_to_nir

    conv = model_to_nir(_variety_model()).nodes["c1"]
    assert tuple(conv.padding) == (1, 1) and conv.weight.shape[2:] == (4, 4)
    assert np.all(conv.weight[:, :, 0, :] == 0) and np.all(conv.weight[:, :, :, 0] == 0)


def test_tess_nir_tess_gives_identical_predictions_on_the_digits_test_split(tmp_path, digits):
    import nir

    from tess_keras import nir_import
    from tess_keras.export.nir_export import model_to_nir
    from tess_keras.models import mcu_net

    x = digits[0]
    for model in (mcu_net((8, 8, 1), 10), _variety_model("zero"), _variety_model("subtract")):
        nir.write(str(tmp_path / "m.nir"), model_to_nir(model))
        imported, _ = nir_import.build_model(nir.read(str(tmp_path / "m.nir")))
        assert [getattr(b, "reset", None) for b in imported.blocks if hasattr(b, "reset")] == [
            b.reset for b in model.spiking_layers]
        np.testing.assert_array_equal(np.argmax(np.asarray(imported(x)), -1), np.argmax(np.asarray(model(x)), -1))
        np.testing.assert_allclose(np.asarray(imported(x)), np.asarray(model(x)), atol=1e-4)


def test_pytorch_padding_of_strided_convolutions_imports_exactly(tmp_path):
    """A NIR Conv2d with PyTorch's symmetric padding (stride 2, pad 1; stride 1, pad 0) is the
    same network in tess-keras as under NIR's semantics."""
    import nir

    from tess_keras import nir_import
    from tess_keras.export import nir_reference

    rng = np.random.default_rng(3)
    shape = lambda *s: np.full(s, 1.0)  # noqa: E731
    for stride, pad, size in ((2, 1, 8), (1, 0, 8), (2, 1, 7), (2, 0, 9)):
        out = (size + 2 * pad - 3) // stride + 1
        nodes = {
            "input": nir.Input(input_type={"input": np.array([2, size, size])}),
            "conv": nir.Conv2d(input_shape=(size, size), weight=rng.normal(size=(6, 2, 3, 3)).astype(np.float32),
                               stride=stride, padding=pad, dilation=1, groups=1, bias=np.zeros(6, np.float32)),
            "lif": nir.LIF(tau=shape(6, out, out) * 2e-4, r=shape(6, out, out) * 2.0, v_leak=shape(6, out, out) * 0,
                           v_threshold=shape(6, out, out) * 0.5, v_reset=shape(6, out, out) * 0),
            "flat": nir.Flatten(input_type={"input": np.array([6, out, out])}, start_dim=0),
            "fc": nir.Affine(weight=rng.normal(size=(5, 6 * out * out)).astype(np.float32),
                             bias=rng.normal(size=5).astype(np.float32)),
            "output": nir.Output(output_type={"output": np.array([5])}),
        }
        edges = [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "output")]
        graph = nir.NIRGraph(nodes=nodes, edges=edges)
        model, _ = nir_import.build_model(graph, lif_reset="zero")
        x = rng.random((16, 3, size, size, 2)).astype(np.float32)
        want = nir_reference.run_graph(graph, x.transpose(0, 1, 4, 2, 3)).sum(axis=1)
        np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-4, err_msg=f"stride {stride} pad {pad}")


# -- snnTorch-written files -----------------------------------------------------------------


@pytest.mark.parametrize("name, lif_reset", [("digits_subtract", "subtract_after_leak"), ("digits_zero", "zero")])
def test_snntorch_file_reproduces_snntorch_predictions_exactly(name, lif_reset):
    import nir

    from tess_keras import nir_import

    reference = np.load(DATA / f"{name}.npz")
    model, notes = nir_import.build_model(nir.read(str(DATA / f"{name}.nir")), lif_reset=lif_reset)
    steps = int(reference["time_steps"])
    x = np.repeat(reference["x_test"][:, None], steps, axis=1).astype(np.float32)
    summed = np.asarray(model(x))
    np.testing.assert_array_equal(np.argmax(summed, -1), reference["predictions"])
    np.testing.assert_allclose(summed, reference["summed"], atol=1e-3)
    assert np.mean(reference["predictions"] == reference["labels"]) > 0.8  # a trained network, not noise
    if name == "digits_zero":
        assert any("identity Readout" in note for note in notes)
    # ... and written back out, NIR's semantics give snnTorch's predictions too.
    from tess_keras.export import nir_reference
    from tess_keras.export.nir_export import model_to_nir, to_nir_layout

    again = nir_reference.predict(model_to_nir(model), to_nir_layout(x))
    np.testing.assert_array_equal(again, reference["predictions"])


def test_reference_executor_runs_snntorch_zero_reset_file_as_snntorch_did():
    """snnTorch's reset_mechanism='zero' is NIR's LIF semantics: the NumPy executor, run on the file
    snnTorch wrote, reproduces snnTorch's own predictions (an independent check of the executor)."""
    import nir

    from tess_keras.export import nir_reference

    reference = np.load(DATA / "digits_zero.npz")
    x = np.repeat(reference["x_test"][:, None], int(reference["time_steps"]), axis=1).transpose(0, 1, 4, 2, 3)
    out = nir_reference.run_graph(nir.read(str(DATA / "digits_zero.nir")), x).sum(axis=1)
    np.testing.assert_array_equal(np.argmax(out, -1), reference["predictions"])
    np.testing.assert_allclose(out, reference["summed"], atol=1e-3)


def test_tess_import_cli_writes_a_run_that_tess_eval_accepts(tmp_path):
    reference = np.load(DATA / "digits_subtract.npz")
    out = tmp_path / "run"
    result = _cli("import", DATA / "digits_subtract.nir", "--out", out, "--lif-reset", "subtract_after_leak")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "imported" and (out / "config.json").is_file()
    assert summary["test_accuracy"] == pytest.approx(np.mean(reference["predictions"] == reference["labels"]))
    # The summary has a trained run's fields (issue 11): no test-selected "best", validation figures, class counts.
    assert "best_test_accuracy" not in summary and summary["selected_epoch"] == 0
    counts = summary["class_counts"]
    assert set(counts) == {"train", "validation", "test"} and sum(counts["test"]) == len(reference["labels"])
    assert sum(counts["validation"]) > 0 and 0.0 <= summary["validation_accuracy"] <= 1.0
    assert summary["validation_fraction"] == data.INFO["digits"].validation_fraction and summary["incomplete"] == []
    result = _cli("eval", out, "--split", "validation")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval.json").read_text())["accuracy"] == pytest.approx(summary["validation_accuracy"])
    result = _cli("eval", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval.json").read_text())["accuracy"] == pytest.approx(summary["test_accuracy"])
    again = _one_paragraph(_cli("import", DATA / "digits_subtract.nir", "--out", out))
    assert "already holds a training run" in again


# -- errors ------------------------------------------------------------------------------------


def _chain(*middle):
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array([4])}), "output": nir.Output(output_type={"output": np.array([3])})}
    names = []
    for index, node in enumerate(middle):
        nodes[f"n{index}"] = node
        names.append(f"n{index}")
    chain = ["input", *names, "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])))


def _lif(n, **over):
    import nir

    params = dict(tau=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 1.0),
                  v_reset=np.zeros(n))
    params.update(over)
    return nir.LIF(**params)


def test_unsupported_nodes_and_parameters_name_the_node_and_why():
    import nir

    from tess_keras.nir_import import NIRImportError, build_model

    w = np.ones((3, 4), np.float32)
    cases = [
        (_chain(nir.Linear(weight=w), nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3),
                                                  v_leak=np.zeros(3), v_threshold=np.ones(3)), nir.Affine(
            weight=np.ones((3, 3)), bias=np.zeros(3))), "'n1' (nir.CubaLIF)", "current-based"),
        (_chain(nir.Affine(weight=w, bias=np.ones(3)), _lif(3), nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3))),
         "'n0' (nir.Affine)", "bias is not zero"),
        (_chain(nir.Linear(weight=w), _lif(3, tau=np.array([2e-4, 3e-4, 2e-4])), nir.Affine(weight=np.ones((3, 3)),
                                                                                           bias=np.zeros(3))),
         "'n1' (nir.LIF)", "tau differs between neurons"),
        (_chain(nir.Linear(weight=w), _lif(3, v_leak=np.ones(3)), nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3))),
         "'n1' (nir.LIF)", "v_leak is not 0"),
        (_chain(nir.Delay(delay=np.ones(4)), nir.Affine(weight=w, bias=np.zeros(3))), "'n0' (nir.Delay)",
         "imports Conv2d, Linear"),
        (_chain(nir.Linear(weight=w), nir.Linear(weight=np.ones((3, 3)))), "'n1' (nir.Linear)", "followed by a neuron"),
    ]
    for graph, where, why in cases:
        with pytest.raises(NIRImportError) as caught:
            build_model(graph)
        assert where in str(caught.value) and why in str(caught.value), str(caught.value)


def test_import_cli_errors_are_one_paragraph(tmp_path):
    import nir

    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    assert "cannot read" in _one_paragraph(_cli("import", bad, "--out", tmp_path / "a"))
    cuba = tmp_path / "cuba.nir"
    nir.write(str(cuba), _chain(nir.Linear(weight=np.ones((3, 4), np.float32)), nir.CubaLIF(
        tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3))))
    message = _one_paragraph(_cli("import", cuba, "--out", tmp_path / "b"))
    assert "node 'n1' (nir.CubaLIF) cannot be imported" in message
    flat = tmp_path / "flat.nir"
    nir.write(str(flat), _chain(nir.Linear(weight=np.ones((3, 4), np.float32)), _lif(3),
                                nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3))))
    wrong = _one_paragraph(_cli("import", flat, "--out", tmp_path / "c"))
    assert "pass the --dataset it was trained for" in wrong
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert "--lif-reset must be one of" in _one_paragraph(
        _cli("import", DATA / "digits_zero.nir", "--out", tmp_path / "d", "--lif-reset", "soft"))


def test_export_refuses_layers_without_a_nir_form():
    import keras

    from tess_keras.export.nir_export import NIRExportError, model_to_nir
    from tess_keras.layers import Readout, SpikingDense
    from tess_keras.models import SpikingSequential

    model = SpikingSequential([SpikingDense(6, name="d"), keras.layers.Dropout(0.1, name="drop"), Readout(3, name="r")])
    model.build((None, None, 4))
    with pytest.raises(NIRExportError, match=r"layer drop \(Dropout\) has no NIR form"):
        model_to_nir(model)
    pooled = SpikingSequential([keras.layers.MaxPooling2D(2, name="mp"), keras.layers.Flatten(), Readout(3, name="r")])
    pooled.build((None, None, 4, 4, 1))
    with pytest.raises(NIRExportError, match="NIR has no max-pool"):
        model_to_nir(pooled)


def test_cortex_m_engine_takes_both_subtract_resets_and_refuses_zero():
    from tess_keras.export.spec import U_FRAC, ExportError, build_spec

    with pytest.raises(ExportError, match="reset='zero'"):
        build_spec(_variety_model("zero"), input_scale=1 / 127, time_steps=4)
    spec = build_spec(_variety_model("subtract"), input_scale=1 / 127, time_steps=4)
    amounts = {layer.name: layer.reset_amount for layer in spec.spiking}
    assert amounts["c1"] == round(0.6 * (1 << U_FRAC)) == spec.spiking[0].threshold  # the spec's reset
    assert amounts["c2"] == round(0.6 / 0.5 * (1 << U_FRAC))  # after the leak: r = v_th / gamma


# -- the whole path: a trained tess run, and snnTorch -> tess-keras -> Cortex-M ------------------


@pytest.mark.slow
def test_trained_run_through_nir_cli_and_back(tmp_path):
    from tess_keras import data, nir_run
    from tess_keras.export.nir_export import test_inputs
    from tess_keras.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(dataset="digits", rule="tess", model="mcu", epochs=1, out=str(run)))
    result = _cli("export", run, "--target", "nir", "--out", tmp_path / "nir")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "nir" / "report.json").read_text())
    assert report["exact"] is True and report["prediction_agreement"] == 1.0 and report["test_samples"] == 397
    assert report["nir_accuracy"] == report["keras_accuracy"] > 0.5
    result = _cli("import", tmp_path / "nir" / "model.nir", "--out", tmp_path / "back")
    assert result.exit_code == 0, result.output
    x, _ = test_inputs(data.load_dataset("digits", None, None, 0))
    np.testing.assert_array_equal(nir_run.predictions(tmp_path / "back", x), nir_run.predictions(run, x))


@pytest.mark.slow
def test_snntorch_network_fine_tunes_and_learns_on_a_cortex_m4_in_qemu(tmp_path):
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm (apt: gcc-arm-none-eabi qemu-system-arm)")
    run, out = tmp_path / "run", tmp_path / "m4"
    reference = np.load(DATA / "digits_subtract.npz")
    result = _cli("import", DATA / "digits_subtract.nir", "--out", run, "--lif-reset", "subtract_after_leak")
    assert result.exit_code == 0, result.output
    result = _cli("train", "--resume", run, "--epochs", "1")  # fine-tune with TESS, snnTorch's neuron kept
    assert result.exit_code == 0, result.output
    assert json.loads((run / "summary.json").read_text())["test_accuracy"] > 0.9
    result = _cli("export", run, "--target", "cortex-m4", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["engine_accuracy"] > np.mean(reference["predictions"] == reference["labels"]) - 0.05, report
    result = _cli("simulate", out, "--board", "mps2-an386", "--timeout", "240")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "simulate.json").read_text())
    assert summary["bit_exact_with_host"] is True, summary["mismatched_fields"]
    assert summary["result"]["accuracy_after"] >= summary["result"]["accuracy_before"]
