"""``tess train``: train with per-dataset recipes, progress, checkpoints and resume."""

import signal
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
        from rich.table import Column

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            # One line at any width: the stats are cut with an ellipsis, never wrapped.
            TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console,
            transient=True,
        )
        self.task = None
        self.rate = 0.0
        self.epochs = 0

    def data(self, sizes, notes):
        from rich.markup import escape

        console.print(
            f"samples: train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']} "
            "(the test split is evaluated once, after the last epoch)"
        )
        for note in notes:
            console.print(f"[yellow]note:[/] {escape(note)}")

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
            f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} {samples_per_second:.0f} samples/s "
            f"ETA {_format_seconds(eta_seconds)}"
        )
        if self.task is None:
            self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=steps, completed=step - 1, stats="")
        self.progress.update(self.task, completed=step, stats=stats)

    def epoch_end(self, row, eta_seconds):
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        if row["val_loss"] is None:
            validation = [("no validation", 0)]
        else:
            validation = [(f"val_loss {row['val_loss']:.4f}", 4), (f"val_acc {row['val_accuracy']:.4f}", 0)]
        # (text, rank): on a terminal too narrow for the line, rank 1 goes first, then 2, 3, 4.
        fields = [
            (f"epoch {row['epoch']}/{self.epochs}", 0), (f"loss {row['loss']:.4f}", 0), (f"acc {row['accuracy']:.4f}", 0),
            *validation, (f"lr {row['lr']:.3g}", 2), (f"{self.rate:.0f} samples/s", 1),
            (f"{row['seconds']:.1f} s", 3), (f"ETA {_format_seconds(eta_seconds)}", 0),
        ]
        out = self.progress.console
        # A pipe or log file gets every field on one line; soft_wrap: rich never breaks it.
        out.print(fit_fields(fields, out.width if out.is_terminal else None), soft_wrap=True)

    def stop(self):
        self.progress.stop()


def fit_fields(fields, width):
    """Join ``(text, rank)`` fields with two spaces; while the line is wider
    than ``width`` (``None``: no limit), leave out the fields of rank 1,
    then 2, and so on (rank 0 always stays)."""
    ranks = sorted({rank for _, rank in fields if rank})
    kept = list(fields)
    for rank in ranks:
        if width is None or len("  ".join(text for text, _ in kept)) <= width:
            break
        kept = [(text, r) for text, r in kept if r != rank]
    return "  ".join(text for text, _ in kept)


def _summary_table(summary, out):
    from rich.table import Table

    table = Table(title="Training summary", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    counts = {split: sum(values) for split, values in summary["class_counts"].items()}
    if summary["validation_accuracy"] is None:
        validation = "none (no validation split)"
    else:
        validation = f"{summary['validation_accuracy']:.4f} (loss {summary['validation_loss']:.4f})"
    if summary["test_accuracy"] is None:
        test = "none (no test split)"
    else:
        test = f"{summary['test_accuracy']:.4f} (loss {summary['test_loss']:.4f}), evaluated once at the end"
    rows = [
        ("dataset", summary["dataset"]),
        ("model / rule", f"{summary['model']} / {summary['rule']} (alpha_post {summary['alpha_post']:g})"),
        ("time steps", str(summary["time_steps"])),
        ("epochs", str(summary["epochs"])),
        ("batch size", str(summary["batch_size"])),
        ("learning rate", f"{summary['lr']:g} -> {summary['final_lr']:g}"),
        ("parameters", f"{summary['parameters']:,}"),
        ("samples", f"train {counts['train']}, validation {counts['validation']}, test {counts['test']}"),
        ("kept model", f"epoch {summary['selected_epoch']} (the last)"),
        ("validation accuracy", validation),
        ("test accuracy", test),
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
    lsg_source: Optional[str] = typer.Option(
        None, help="TESS learning signal: block (after the block's max-pool, default) or layer (the layer's spikes)."
    ),
    seed: Optional[int] = typer.Option(None, help="Seed of weights, data order and augmentation (default 0)."),
    data_dir: Optional[str] = typer.Option(None, envvar="TESS_DATA_DIR", help="Where datasets live."),
    out: Optional[Path] = typer.Option(None, help="Run directory to write (default runs/<dataset>-<rule>-<time>)."),
    config: Optional[Path] = typer.Option(None, help="TOML file of options (keys as the options, e.g. batch_size = 64)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in RUN_DIR exactly where it stopped."),
    validation_fraction: Optional[float] = typer.Option(
        None,
        help="Share of the training data held out (seeded, stratified) as the validation split that drives the "
        "learning-rate schedule (default: the dataset's, 0.1 for most); 0 = no validation split.",
    ),
    allow_incomplete: Optional[bool] = typer.Option(
        None, "--allow-incomplete", help="Train even if classes or files are missing; recorded in summary.json."
    ),
    limit_train: Optional[int] = typer.Option(
        None, rich_help_panel=ADVANCED, help="Train on a seeded, stratified subset of N samples (quick experiments)."
    ),
    limit_test: Optional[int] = typer.Option(
        None, rich_help_panel=ADVANCED, help="At most N samples (seeded, stratified) of validation and of test."
    ),
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
    cluster_timeout: Optional[float] = typer.Option(
        None, rich_help_panel=ADVANCED, help="multi-worker: seconds to wait for the other workers (default 120)."
    ),
):
    """Train a spiking network with checkpoints, exact resume and plots.

    Writes RUN_DIR: metrics.csv, summary.json, model.keras, learning_curves.png, TensorBoard logs/ and
    checkpoint/. Each epoch is evaluated on the validation split (held out of the training data), which
    alone drives the learning-rate schedule; the test split is evaluated once, on the final model.
    Options not given come from the dataset's recipe (the paper's), then from --config.
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
        "lsg_source": lsg_source,
        "seed": seed,
        "data_dir": data_dir,
        "out": None if out is None else str(out),
        "limit_train": limit_train,
        "limit_test": limit_test,
        "strategy": strategy,
        "precision": precision,
        "jit": jit,
        "cluster_timeout": cluster_timeout,
        "validation_fraction": validation_fraction,
        "allow_incomplete": allow_incomplete,
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
        by = "" if stop.signum == signal.SIGINT else f" by {signal.Signals(stop.signum).name}"
        console.print(
            f"[bold yellow]Interrupted{by}[/] {where}; checkpoint saved in {stop.run_dir}. "
            f"Continue with: tess train --resume {stop.run_dir}"
        )
        raise typer.Exit(128 + stop.signum)
    except training.TrainingDiverged as error:
        reporter.stop()
        fail(str(error))
    except (training.ConfigError, data.DatasetError) as error:
        reporter.stop()
        fail(str(error))
    except BaseException:  # a second Ctrl-C or an unexpected error: never leave the bar drawn
        reporter.stop()
        raise
    reporter.stop()
    console.print(_summary_table(summary, run_config.out))
