"""``tess train``: train with per-dataset recipes, progress, checkpoints and resume."""

import time
from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli.app import app, console, fail

ADVANCED = "Advanced"


def _format_seconds(seconds):
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RichReporter:
    """Draws a progress bar per epoch and prints one line per finished epoch."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=True,
        )
        self.task = None
        self.rate = 0.0
        self.epochs = 0

    def start(self, config, steps_per_epoch, state):
        self.epochs = config.epochs
        if state.epochs_done >= config.epochs:
            console.print(
                f"{config.out} has already trained {state.epochs_done} epochs; writing its outputs again "
                "(pass a larger --epochs to train more)"
            )
        elif state.epochs_done or state.batches_done:
            where = f"epoch {state.epochs_done + 1}" + (f", batch {state.batches_done}" if state.batches_done else "")
            console.print(f"resuming {config.out} at {where} of {config.epochs}")
        console.print(
            f"training {config.model} with {config.rule} on {config.dataset}: T={config.time_steps}, "
            f"batch {config.batch_size}, lr {config.lr:g}, alpha_post {config.alpha_post:g}, seed {config.seed}, "
            f"{steps_per_epoch} batches per epoch -> {config.out}"
        )
        if (config.strategy, config.precision, config.jit) != ("default", "float32", False):
            console.print(f"strategy {config.strategy}, precision {config.precision}, XLA {'on' if config.jit else 'off'}")
        from rich.markup import escape

        from tess_keras.distribute import gpu_status

        _, gpu_problem = gpu_status()
        if gpu_problem:  # a GPU machine silently training on its CPU is worth a line
            console.print(f"[yellow]note:[/] {escape(gpu_problem)}")
        self.progress.start()

    def batch(self, epoch, step, steps, logs, samples_per_second, eta_seconds):
        self.rate = samples_per_second
        stats = (
            f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  lr {logs['lr']:.3g}  {samples_per_second:.0f} samples/s  "
            f"ETA {_format_seconds(eta_seconds)}"
        )
        if self.task is None:
            self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=steps, completed=step - 1, stats="")
        self.progress.update(self.task, completed=step, stats=stats)

    def epoch_end(self, row, eta_seconds):
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.progress.console.print(
            f"epoch {row['epoch']}/{self.epochs}  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['lr']:.3g}  "
            f"{self.rate:.0f} samples/s  {row['seconds']:.1f} s  ETA {_format_seconds(eta_seconds)}"
        )

    def stop(self):
        self.progress.stop()


def _summary_table(summary, out):
    from rich.table import Table

    table = Table(title="Training summary", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("dataset", summary["dataset"]),
        ("model / rule", f"{summary['model']} / {summary['rule']} (alpha_post {summary['alpha_post']:g})"),
        ("time steps", str(summary["time_steps"])),
        ("epochs", str(summary["epochs"])),
        ("batch size", str(summary["batch_size"])),
        ("learning rate", f"{summary['lr']:g} -> {summary['final_lr']:g}"),
        ("parameters", f"{summary['parameters']:,}"),
        ("test accuracy", f"{summary['test_accuracy']:.4f} (best {summary['best_test_accuracy']:.4f})"),
        ("test loss", f"{summary['test_loss']:.4f}"),
        ("training time", _format_seconds(summary["train_seconds"])),
        ("run directory", str(out)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@app.command()
def train(
    dataset: Optional[str] = typer.Option(None, help="Dataset name (default digits, built in); see `tess datasets`."),
    rule: Optional[str] = typer.Option(None, help="Learning rule: tess, stllr or bptt (default tess)."),
    model: Optional[str] = typer.Option(None, help="Network: mcu (Cortex-M sized) or vgg9 (default: the recipe's)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the recipe's, 200 for paper datasets)."),
    batch_size: Optional[int] = typer.Option(None, help="Samples per batch (default: the recipe's)."),
    time_steps: Optional[int] = typer.Option(None, help="Time steps T (default: the recipe's / the dataset's)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 1e-3)."),
    alpha_post: Optional[float] = typer.Option(None, help="TESS/S-TLLR non-causal term weight: -1, 0 or 1 (default: the recipe's)."),
    seed: Optional[int] = typer.Option(None, help="Seed of weights, data order and augmentation (default 0)."),
    data_dir: Optional[str] = typer.Option(None, envvar="TESS_DATA_DIR", help="Where datasets live."),
    out: Optional[Path] = typer.Option(None, help="Run directory to write (default runs/<dataset>-<rule>-<time>)."),
    config: Optional[Path] = typer.Option(None, help="TOML file of options (keys as the options, e.g. batch_size = 64)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in RUN_DIR exactly where it stopped."),
    limit_train: Optional[int] = typer.Option(
        None, rich_help_panel=ADVANCED, help="Use only the first N training samples (quick experiments, tests)."
    ),
    limit_test: Optional[int] = typer.Option(None, rich_help_panel=ADVANCED, help="Use only the first N test samples."),
    strategy: Optional[str] = typer.Option(
        None,
        rich_help_panel=ADVANCED,
        help="default (one device), mirrored (every local GPU) or multi-worker (machines in TF_CONFIG); "
        "--batch-size is the global batch.",
    ),
    precision: Optional[str] = typer.Option(
        None, rich_help_panel=ADVANCED, help="float32 (default), mixed_float16 or mixed_bfloat16 (GPU speed-up)."
    ),
    jit: Optional[bool] = typer.Option(
        None, "--jit/--no-jit", rich_help_panel=ADVANCED, help="Compile the learning rule with XLA (default off)."
    ),
):
    """Train a spiking network with checkpoints, exact resume and plots.

    Writes RUN_DIR: metrics.csv, summary.json, model.keras, learning_curves.png, TensorBoard logs/ and
    checkpoint.npz. Options not given come from the dataset's recipe (the paper's), then from --config.
    A checkpoint is written after every epoch and on Ctrl-C; `tess train --resume RUN_DIR` continues
    exactly where it stopped (only --epochs and --data-dir may change).
    """
    from tess_keras import data, training

    options = {
        "dataset": dataset,
        "rule": rule,
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "time_steps": time_steps,
        "lr": lr,
        "alpha_post": alpha_post,
        "seed": seed,
        "data_dir": data_dir,
        "out": None if out is None else str(out),
        "limit_train": limit_train,
        "limit_test": limit_test,
        "strategy": strategy,
        "precision": precision,
        "jit": jit,
    }
    try:
        if resume is not None:
            if out is not None and Path(out).resolve() != Path(resume).resolve():
                fail(f"--out {out} and --resume {resume} name different runs; a resumed run is written in place. Drop --out.")
            saved = training.load_saved_config(resume)
            run_config = training.check_compatible(saved, options, config)
            run_config.out = str(resume)
        else:
            run_config = training.resolve_config(options, config)
            if out is None:
                run_config.out = str(Path("runs") / f"{run_config.dataset}-{run_config.rule}-{time.strftime('%Y%m%d-%H%M%S')}")
    except training.ConfigError as error:
        fail(str(error))

    reporter = RichReporter()
    try:
        summary = training.train(run_config, reporter=reporter, resume=resume is not None)
    except training.TrainingInterrupted as stop:
        reporter.stop()
        where = f"during epoch {stop.epoch} (after batch {stop.batch})" if stop.batch else f"before epoch {stop.epoch}"
        console.print(
            f"[bold yellow]Interrupted[/] {where}; checkpoint saved in {stop.run_dir}. "
            f"Continue with: tess train --resume {stop.run_dir}"
        )
        raise typer.Exit(130)
    except training.TrainingDiverged as error:
        reporter.stop()
        fail(str(error))
    except (training.ConfigError, data.DatasetError) as error:
        reporter.stop()
        fail(str(error))
    reporter.stop()
    console.print(_summary_table(summary, run_config.out))
