"""``tess export``."""

import contextlib
import signal
from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli import picking
from tess_keras.cli.app import app, console, fail
from tess_keras.export.boards import names_for_help


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM ends the export like Ctrl-C: the temporary folder is removed, OUT_DIR stays as it was."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. a test runner): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _learn_layers(learn):
    names = [n.strip() for n in learn.split(",") if n.strip()]
    if names == ["all"]:
        return None
    if names == ["none"] or not names:
        return []
    return names


@app.command("export")
def export_command(
    run_dir: Optional[Path] = typer.Argument(
        None, help="Run directory written by `tess train` (holds model.keras); default: the most recent finished "
        "run under runs/."
    ),
    target: str = typer.Option("cortex-m4", help="cortex-m4, cortex-m7, cortex-m33, cortex-m55, host or nir (a NIR file)."),
    board: str = typer.Option(
        None, help=f"Board whose flash/RAM the model must fit, recorded for tess build (default: the target's QEMU "
        f"board): {names_for_help()}."
    ),
    learn: str = typer.Option("all", help="Comma-separated layers that keep learning on the device, 'all' or 'none'."),
    learning_rate: float = typer.Option(
        None, min=0.0, help="On-device SGD learning rate, one step per sample (default 0.005; 0.0025 for event frames)."
    ),
    representative: int = typer.Option(100, help="Training samples that calibrate the int8 quantisation."),
    demo_learn: int = typer.Option(256, min=1, help="Samples in the demo's on-device learning stream."),
    demo_test: int = typer.Option(200, min=1, help="Samples in the demo's held-out set."),
    demo_epochs: int = typer.Option(
        None, min=1, help="Passes of the demo over its learning stream (default 2; 3 for event frames)."
    ),
    evaluate: int = typer.Option(0, min=0, help="Held-out samples for the accuracies (0: the whole test split)."),
    data_dir: str = typer.Option("", envvar="TESS_DATA_DIR", help="Where datasets live (default: the run's)."),
    out: Optional[Path] = typer.Option(
        None, help="Directory to write (new, empty or a previous export's; default RUN_DIR/export-TARGET)."
    ),
):
    """Export a trained network: int8 TFLite-Micro model, generated C++ engine with on-device TESS
    learning, demo data and a memory/accuracy report (OUT_DIR/report.json)."""
    run_dir = picking.pick_run(run_dir)
    if out is None:
        out = picking.default_export_dir(run_dir, target)
    if target == "nir":  # the NIR interchange file (tess_keras.cli.nir)
        from tess_keras.cli.nir import export_nir_target

        export_nir_target(run_dir, out, evaluate, data_dir)
        return
    _export_firmware(run_dir, out, target, board, _learn_layers(learn), learning_rate, representative, demo_learn,
                     demo_test, demo_epochs, evaluate, data_dir)


def _export_firmware(run_dir, out, target, board, layers, learning_rate, representative, demo_learn, demo_test,
                     demo_epochs, evaluate, data_dir):
    """The firmware export (every target but the interchange formats) and its summary lines."""
    from tess_keras.export.exporter import export
    from tess_keras.export.spec import ExportError

    try:
        with _sigterm_as_interrupt():
            report = export(
                run_dir, out, target=target, board=board, learn=layers, learning_rate=learning_rate,
                data_dir=data_dir or None, representative=representative, demo_learn=demo_learn, demo_test=demo_test,
                demo_epochs=demo_epochs, evaluate=evaluate or None, console=console,
            )
    except ExportError as error:
        fail(str(error))
    except KeyboardInterrupt:
        console.print(f"[bold yellow]Interrupted[/]: nothing was written; {out} was left as it was.")
        raise typer.Exit(130)
    demo = report["demo"]
    console.print(
        f"accuracy on {report['test_samples']} held-out samples: keras {report['keras_accuracy']:.4f}, "
        f"tflm int8 {report['tflm_accuracy']:.4f}, engine int8 {report['engine_accuracy']:.4f} "
        f"(agrees with tflm on {report['engine_tflm_agreement']:.4f})"
    )
    console.print(
        f"demo ({demo['task']}): golden-model accuracy {demo['golden_accuracy_before']:.4f} -> "
        f"{demo['golden_accuracy_after']:.4f} after on-device learning"
    )
    console.print(f"wrote {out} (board {report['board'] or 'host'}, fits: {report['fits']})")
