"""``tess train``."""

from pathlib import Path

import typer

from tess_keras.cli.app import app, console, fail


@app.command()
def train(
    dataset: str = typer.Option("digits", help="Dataset name (digits is built in)."),
    rule: str = typer.Option("tess", help="Learning rule: tess, stllr or bptt."),
    model: str = typer.Option("mcu", help="Network: mcu (Cortex-M sized) or vgg9."),
    epochs: int = typer.Option(20, min=1, help="Training epochs."),
    batch_size: int = typer.Option(32, min=1, help="Samples per batch."),
    time_steps: int = typer.Option(0, min=0, help="Time steps T (0: the dataset's default)."),
    lr: float = typer.Option(1e-3, min=0.0, help="Adam learning rate."),
    alpha_post: float = typer.Option(1.0, help="TESS/S-TLLR non-causal term weight: -1, 0 or 1."),
    seed: int = typer.Option(0, help="Random seed."),
    data_dir: str = typer.Option("", envvar="TESS_DATA_DIR", help="Where datasets live."),
    out: Path = typer.Option(Path("runs/latest"), help="Run directory to write."),
):
    """Train a spiking network and write RUN_DIR (metrics.csv, summary.json, model.keras)."""
    from tess_keras.rules import RULES

    if rule not in RULES:
        fail(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}.")
    from tess_keras import data
    from tess_keras.training import TrainConfig, train as run_training

    try:
        summary = run_training(
            TrainConfig(dataset, rule, model, epochs, batch_size, time_steps, lr, alpha_post, seed, data_dir, str(out)),
            verbose=2,
        )
    except data.DatasetError as error:
        fail(str(error))
    console.print(f"test accuracy {summary['test_accuracy']:.4f}; wrote {out}")
