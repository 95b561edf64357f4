"""``tess import``: a NIR file (snnTorch, Norse, Sinabs, tess-keras ...) as a run directory."""

from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli.app import app, console, fail


@app.command("import")
def import_command(
    nir_file: Path = typer.Argument(..., help="A .nir file (NIR's HDF5, written with nir.write)."),
    out: Path = typer.Option(..., help="Run directory to create (config.json, model.keras, summary.json)."),
    dataset: str = typer.Option("digits", help="Dataset the network was trained for (evaluation and fine-tuning)."),
    time_steps: int = typer.Option(0, min=0, help="T (0: the dataset's default)."),
    lif_reset: str = typer.Option(
        "zero", help="How NIR LIF nodes reset: zero (NIR's own v_reset semantics; snnTorch reset_mechanism='zero'), "
        "subtract_after_leak (what snnTorch's Leaky with its default subtract reset computed; its NIR export writes "
        "it as a LIF) or subtract (the spec's reset before the leak: runs on a Cortex-M, but a different network)."
    ),
    dt: Optional[float] = typer.Option(None, help="Euler step of the file's time constants (default: the file's "
                                       "metadata dt, else 1e-4 as snnTorch writes)."),
    rule: str = typer.Option("tess", help="Learning rule for fine-tuning with `tess train --resume`: tess, stllr, bptt."),
    lr: float = typer.Option(1e-3, help="Adam learning rate for fine-tuning."),
    alpha_post: float = typer.Option(1.0, help="TESS/S-TLLR non-causal term weight."),
    batch_size: int = typer.Option(32, min=1, help="Samples per batch."),
    seed: int = typer.Option(0, help="Seed of the data split and fine-tuning."),
    data_dir: str = typer.Option("", envvar="TESS_DATA_DIR", help="Where datasets live."),
):
    """Import a NIR graph as a SpikingSequential run directory that `tess eval`, `tess train --resume`
    (fine-tuning with the chosen --rule) and `tess export` accept."""
    from tess_keras import data, nir_import, nir_run, training

    if dt is not None and not dt > 0:
        fail(f"--dt must be a positive number of seconds, got {dt:g}.")
    try:
        summary = nir_run.import_nir(
            nir_file, out, dataset=dataset, time_steps=time_steps, lif_reset=lif_reset, dt=dt, rule=rule, lr=lr,
            alpha_post=alpha_post, batch_size=batch_size, seed=seed, data_dir=data_dir,
        )
    except (nir_import.NIRImportError, training.ConfigError, data.DatasetError) as error:
        fail(str(error))
    for note in summary["notes"]:
        console.print(f"note: {note}")
    layers = ", ".join(f"{layer['name']} ({layer['type']})" for layer in summary["layers"])
    console.print(f"imported {nir_file}: {layers}")
    console.print(
        f"test accuracy {summary['test_accuracy']:.4f} on {dataset} (T={summary['time_steps']}); wrote {out}. "
        f"Fine-tune with: tess train --resume {out} --epochs N"
    )


def export_nir_target(run_dir, out, evaluate, data_dir):
    """``tess export RUN_DIR --target nir``: OUT/model.nir and OUT/report.json, with the measured
    agreement of the file run by NIR's semantics (export/nir_reference.py) on the test split."""
    from tess_keras.export.nir_export import NIRExportError, export_nir

    try:
        report = export_nir(run_dir, out, data_dir=data_dir or None, evaluate=evaluate or None)
    except NIRExportError as error:
        fail(str(error))
    exact = "exact" if report["exact"] else "NOT exact"
    console.print(
        f"NIR graph ({exact}): {len(report['nodes'])} nodes; on {report['test_samples']} test samples keras accuracy "
        f"{report['keras_accuracy']:.4f}, NIR reference {report['nir_accuracy']:.4f}, predictions agree on "
        f"{report['prediction_agreement']:.4f}"
    )
    if not report["exact"]:
        console.print(f"note: {report['note']}")
    console.print(f"wrote {Path(out) / 'model.nir'} and report.json")
