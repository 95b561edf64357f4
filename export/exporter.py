"""``tess export``: a trained run directory -> a ready firmware project.

OUT_DIR receives:

- ``tess_engine.h/.cc``: the generated integer engine with on-device TESS
  learning (Jinja2 templates); it compiles with the fixed runtime in ``runtime/``.
- ``model.tflite`` + ``model_data.h/.cc``: the int8 TFLite-Micro step model.
- ``demo_data.h/.cc``: the on-device learning demo's samples.
- ``report.json``: accuracies, memory table, board, Q-formats.
- ``CMakeLists.txt``, ``runtime/``, ``cmake/``: the engine as a CMake package,
  the library ``tess::engine`` a user's own firmware links (``export/package.py``);
  ``runtime/`` is the export's only copy of the runtime (firmware/runtime), which
  the host check, ``tess build`` and the package all compile.

Everything is written into a temporary sibling directory first and swapped
into place at the end (``export/outdir.py``), so a failed or killed export
leaves OUT_DIR as it was; OUT_DIR is replaced only when it is a previous
export (its ``.tess-export.json`` manifest lists the files it wrote).
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tess_keras.export import boards as board_presets
from tess_keras.export import budget, codegen, demo, outdir, package, tflm
from tess_keras.export.golden import GoldenEngine, run_samples
from tess_keras.export.spec import ExportError, build_spec

# On-device SGD defaults per encoding, chosen on the demo tasks: event frames bring more
# steps (T=6) and larger inputs per sample than static images, so a smaller step and
# one pass more.
DEFAULT_LEARNING_RATE = {"direct": 0.005, "frames": 0.0025}
DEFAULT_DEMO_EPOCHS = {"direct": 2, "frames": 3}
Q_FORMATS = {
    "input": "int8, real = q * input_scale",
    "weights": "int8 [-127, 127], per output channel (readout per tensor)",
    "membrane": "int16 Q4.11, saturating",
    "surrogate_psi": "Q15",
    "post_trace_h": "int16 Q15",
    "pre_trace_q": "int16 Q(15-F).F of one spike (F=13) or one input LSB (F=7)",
    "lsg_and_softmax_logits": "int32 Q19.12",
    "softmax_error": "Q15",
    "weight_updates": "int32 saturating accumulators; Q16 of one weight LSB before stochastic rounding",
}


def load_run(run_dir):
    """(model, summary) of a ``tess train`` run directory."""
    from tess_keras.modelfile import ModelFileError, load_spiking_model

    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise ExportError(f"{run_dir} has no model.keras; pass the directory `tess train --out` wrote.")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    try:
        model = load_spiking_model(model_path, f"Rewrite it with `tess train --resume {run_dir}`.")
    except ModelFileError as error:  # a corrupt or foreign file: say which
        raise ExportError(str(error)) from None
    return model, summary


def check_out_dir(out_dir):
    """Refuse an OUT_DIR that is not new, empty or a previous export of unchanged files.

    Also removes the temporary folders a killed export left next to it.

    Args:
        out_dir: the --out directory.
    """
    try:
        outdir.check_replaceable(out_dir)
        outdir.clean_leftovers(out_dir)
    except outdir.OutDirError as error:
        raise ExportError(str(error)) from None
    except OSError as error:
        raise ExportError(f"cannot use {out_dir}: {error.strerror or error}. Choose another --out.") from None


def resolve_board(target, board):
    """The board preset an export is for (None for the host).

    Args:
        target: a ``--target`` value.
        board: a board name, or None for the target's QEMU board.
    """
    try:
        targets, boards = board_presets.targets(), board_presets.all_boards()
    except board_presets.BoardTableError as error:
        raise ExportError(str(error)) from None
    if target not in targets:
        raise ExportError(f"unknown --target {target!r}; choose one of: {', '.join(targets)}.")
    if board is None:
        name = board_presets.default_boards()[target]
        return boards[name] if name else None
    preset = board_presets.get_board(board)
    if preset is None:
        raise ExportError(f"unknown --board {board!r}; choose one of: {', '.join(boards)}.")
    if target != "host" and preset.target != target:
        raise ExportError(f"board {preset.name} has a {preset.target}, not a {target}; pass --target {preset.target}.")
    return preset


def _accuracy(predictions, labels):
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def export(
    run_dir,
    out_dir,
    target="cortex-m4",
    board=None,
    learn=None,
    learning_rate=None,
    data_dir=None,
    demo_learn=demo.DEFAULT_LEARN_COUNT,
    demo_test=demo.DEFAULT_TEST_COUNT,
    demo_epochs=None,
    representative=100,
    evaluate=None,
    verify_host=True,
    console=None,
):
    """Export a trained run. Returns the report dict (also OUT_DIR/report.json).

    Args:
        run_dir: a ``tess train`` output directory.
        out_dir: where to write the firmware project.
        target: cortex-m4, cortex-m7, cortex-m33, cortex-m55 or host.
        board: a preset of ``tess_keras.export.boards`` (default: per target).
        learn: layer names that learn on the device (None: all; [] : none).
        learning_rate: on-device SGD learning rate (one step per sample; None: 0.005 for
            static images, 0.0025 for event frames).
        data_dir: datasets folder (default: the run's, else TESS_DATA_DIR).
        demo_learn, demo_test, demo_epochs: size of the demo's learning stream,
            held-out set and passes (None: 2 for static images, 3 for event frames).
        representative: training samples used to calibrate int8 quantisation.
        evaluate: held-out samples for the accuracies (None: the whole test split).
        verify_host: compile the engine for the host and check it against the
            golden model (needs g++).
        console: a rich console for the memory table (None: quiet).

    Raises:
        ExportError: with one paragraph naming the problem and the fix.
    """
    from tess_keras import data

    board_preset = resolve_board(target, board)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    model, summary = load_run(run_dir)
    dataset = summary.get("dataset", "digits")
    try:
        splits = data.load_dataset(
            dataset, data_dir or summary.get("data_dir") or None, summary.get("time_steps") or None, summary.get("seed", 0)
        )
    except data.DatasetError as error:
        raise ExportError(f"cannot load the run's dataset {dataset!r}: {error}") from None

    if len(splits.y_train) == 0 or representative < 1:
        raise ExportError(
            "the representative set is empty: int8 quantisation needs training samples to calibrate. "
            "Check the run's dataset, and pass --representative 1 or more."
        )
    train_steps = demo.as_steps(splits, splits.x_train[:representative])
    graph = tflm.StepGraph(model)
    rep_inputs = tflm.representative_inputs(graph, train_steps, limit=representative)
    top = float(np.max(np.abs(splits.x_train)))
    input_scale = top / 127.0 if top > 0 else 1.0 / 127.0

    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE.get(splits.encoding, 0.005)
    if demo_epochs is None:
        demo_epochs = DEFAULT_DEMO_EPOCHS.get(splits.encoding, 2)
    spec = build_spec(model, input_scale, splits.time_steps, learn=learn, learning_rate=learning_rate)
    demo_learn, demo_test = demo.fit_to_flash(
        demo_learn, demo_test, splits.time_steps * spec.input_size, board_preset.flash_bytes if board_preset else None
    )
    demo_set = demo.make_demo(splits, spec, demo_learn, demo_test, seed=summary.get("seed", 0))
    rows = budget.engine_rows(spec) + [budget.demo_row(demo_set["learn_x"], demo_set["test_x"])]
    flash_bytes, ram_bytes, fits = budget.check_fits(rows, board_preset)
    if console is not None:
        budget.render_table(rows, board_preset, console)
    if not fits:
        raise ExportError(budget.over_budget_message(rows, board_preset))

    # Accuracies on the held-out split: float Keras, TFLite-Micro int8, engine int8.
    count = len(splits.y_test) if evaluate is None else min(int(evaluate), len(splits.y_test))
    test_x = demo.as_steps(splits, splits.x_test[:count])
    test_y = splits.y_test[:count]
    keras_pred = np.argmax(model.predict(test_x, batch_size=64, verbose=0), axis=-1)
    model_bytes = tflm.convert(graph, rep_inputs)
    ops = tflm.check_builtins(model_bytes)
    tflm_pred = tflm.TFLMRunner(model_bytes, graph).predict(test_x)
    engine_pred = run_samples(GoldenEngine(spec, batch=count), spec.quantize_input(test_x), frames=True)

    # The demo in the golden model: accuracy before and after on-device learning.
    demo_eval = GoldenEngine(spec, batch=len(demo_set["test_y"]))
    before = _accuracy(run_samples(demo_eval, demo_set["test_x"], frames=True), demo_set["test_y"])
    learner = GoldenEngine(spec)
    for _ in range(demo_epochs):
        run_samples(learner, demo_set["learn_x"], demo_set["learn_y"], learn=True, frames=True)
    demo_eval.weights, demo_eval.bias = learner.weights, learner.bias
    after = _accuracy(run_samples(demo_eval, demo_set["test_x"], frames=True), demo_set["test_y"])

    try:
        tmp = outdir.make_temporary(out_dir)
    except OSError as error:
        raise ExportError(f"cannot write next to {out_dir}: {error.strerror or error}. Choose another --out.") from None
    try:
        codegen.write_engine(spec, tmp, source=str(Path(run_dir) / "model.keras"))
        package.write_package(tmp, source=str(Path(run_dir) / "model.keras"), board=board_preset)
        tflm.write_model_data(model_bytes, tmp)
        demo.write_demo_data(demo_set, tmp, epochs=demo_epochs)
        host_check = None
        if verify_host:
            host_check = _verify_host(spec, tmp, demo_set)
        report = {
            "run_dir": str(run_dir),
            "dataset": splits.name,
            "target": target,
            "board": board_preset.name if board_preset else None,
            "fits": bool(fits),
            "flash_bytes": int(flash_bytes),
            "ram_bytes": int(ram_bytes),
            "board_flash_bytes": board_preset.flash_bytes if board_preset else None,
            "board_ram_bytes": board_preset.ram_bytes if board_preset else None,
            "memory": [dict(layer=r.name, flash=r.flash, ram=r.ram, detail=r.detail) for r in rows],
            "time_steps": splits.time_steps,
            "num_classes": spec.num_classes,
            "input_shape": list(spec.input_shape),
            "input_scale": spec.input_scale,
            "test_samples": int(count),
            "keras_accuracy": _accuracy(keras_pred, test_y),
            "tflm_accuracy": _accuracy(tflm_pred, test_y),
            "engine_accuracy": _accuracy(engine_pred, test_y),
            "engine_tflm_agreement": _accuracy(engine_pred, tflm_pred),
            "engine_keras_agreement": _accuracy(engine_pred, keras_pred),
            "tflm_ops": ops,
            "tflm_model_bytes": len(model_bytes),
            "learn": [layer.name for layer in spec.learnable],
            "lsg_source": spec.lsg_source,
            "learning_rate": learning_rate,
            "stochastic_rounding_seed": spec.seed,
            "q_formats": Q_FORMATS,
            "demo": {
                "task": demo_set["task"],
                "learn_samples": len(demo_set["learn_y"]),
                "test_samples": len(demo_set["test_y"]),
                "epochs": demo_epochs,
                "golden_accuracy_before": before,
                "golden_accuracy_after": after,
            },
            "host_bit_exact": host_check,
        }
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        outdir.write_manifest(tmp, target=target, board=report["board"], run_dir=str(Path(run_dir).resolve()))
        outdir.swap_into_place(tmp, out_dir)
    except outdir.OutDirError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(str(error)) from None
    except OSError as error:  # e.g. the disk filled up: nothing half-written stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(
            f"writing the export failed: {error.strerror or error}{f' ({error.filename})' if error.filename else ''}. "
            f"{out_dir} was left as it was; free some space or choose another --out."
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _verify_host(spec, directory, demo_set, samples=8):
    """Compile the engine for the host (no sanitizers, in a scratch dir) and compare a
    few learning samples with the golden model bit for bit."""
    from tess_keras.export import hostbuild

    if shutil.which("g++") is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        for name in codegen.ENGINE_FILES:
            shutil.copyfile(Path(directory) / name, Path(scratch) / name)
        shutil.copytree(Path(directory) / "runtime", Path(scratch) / "runtime")  # the runtime the export ships
        binary = hostbuild.build_host(scratch, spec, sanitize=False)
        x, y = demo_set["learn_x"][:samples], demo_set["learn_y"][:samples]
        host = hostbuild.run_host(binary, spec, x, y, learn=True, dump=True, frames=True)
    golden = hostbuild.golden_records(spec, x, y, learn=True, frames=True)
    mismatch = hostbuild.first_mismatch(golden, host)
    if mismatch:
        raise ExportError(f"internal: the host build of the engine differs from the golden model ({mismatch}).")
    return True
