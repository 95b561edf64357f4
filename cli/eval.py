"""``tess eval``: accuracy, per-class accuracy, confusion matrix and spike rates of a run."""

import json
from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli.app import app, fail


def evaluate(model, dataset):
    """Run ``model`` over a batched ``tf.data`` dataset without learning.

    Returns:
        dict with ``labels`` and ``predictions`` (numpy int arrays),
        ``loss`` (per-step cross-entropy averaged over time and samples) and
        ``spike_rates`` (mean firing rate per spiking layer, weighted by
        samples).
    """
    import numpy as np
    import tensorflow as tf

    run = tf.function(model.run_sequence, reduce_retracing=True)
    labels, predictions, rates = [], [], np.zeros(len(model.spiking_layers))
    loss_sum, steps = 0.0, 0
    for inputs, batch_labels in dataset:
        logits_sum, ce_sum, spike_rates = run(inputs, batch_labels)
        batch = int(batch_labels.shape[0])
        labels.append(batch_labels.numpy())
        predictions.append(np.argmax(logits_sum.numpy(), axis=-1))
        loss_sum += float(ce_sum)
        steps = int(inputs.shape[1])
        rates += batch * np.array([float(r) for r in spike_rates])
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    return {
        "labels": labels,
        "predictions": predictions,
        "loss": loss_sum / (len(labels) * steps),
        "spike_rates": rates / len(labels),
    }


def plot_confusion(path, matrix, title):
    """Confusion matrix (rows: true class, columns: predicted) as a PNG."""
    import io
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = matrix.shape[0]
    size = min(4 + classes * 0.45, 20)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    if classes <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(classes):
            for j in range(classes):
                color = "white" if matrix[i, j] > threshold else "black"
                axis.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
        axis.set_xticks(range(classes))
        axis.set_yticks(range(classes))
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


@app.command("eval")
def eval_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `tess train`."),
    dataset: Optional[str] = typer.Option(None, help="Evaluate on this dataset instead of the run's (same shapes)."),
    data_dir: Optional[str] = typer.Option(None, envvar="TESS_DATA_DIR", help="Where datasets live."),
    batch_size: Optional[int] = typer.Option(None, help="Samples per batch (default: the run's)."),
    split: str = typer.Option(
        "test", help="test, or validation (the split the run held out of its training data: same seed and fraction)."
    ),
    limit_test: Optional[int] = typer.Option(
        None, rich_help_panel="Advanced", help="At most N samples of the split (seeded, stratified, as in training)."
    ),
):
    """Accuracy, per-class accuracy, confusion matrix and spike rate per layer on the test split
    (or, with --split validation, on the validation split the run held out of its training data).

    Also writes RUN_DIR/confusion.png and RUN_DIR/eval.json.
    """
    if split not in ("test", "validation"):
        fail(f"--split must be test or validation, got {split!r}.")
    from tess_keras import training

    try:
        config = training.load_saved_config(run_dir)
    except training.ConfigError as error:
        fail(str(error))
    model_path = Path(run_dir) / "model.keras"
    if not model_path.exists():
        fail(f"{run_dir} has no model.keras: training has not finished. Finish it with `tess train --resume {run_dir}`.")
    from tess_keras.modelfile import ModelFileError, load_spiking_model
    for label, value in (("--batch-size", batch_size), ("--limit-test", limit_test)):
        if value is not None and value < 1:
            fail(f"{label} must be a positive integer, got {value}.")

    import numpy as np

    from tess_keras import data

    name = dataset or config.dataset
    if name not in data.LOADERS:
        fail(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(data.LOADERS))}.")
    try:
        splits = data.load_dataset(
            name,
            data_dir or config.data_dir or None,
            config.time_steps,
            config.seed,
            # The run's validation split is drawn again exactly: same seed, same fraction.
            validation_fraction=config.validation_fraction if name == config.dataset else None,
            allow_incomplete=config.allow_incomplete,
            limit_test=limit_test or 0,
        )
    except data.DatasetError as error:
        fail(str(error))
    if not len(splits.subset(split)[1]):
        fail(f"{name} has no {split} split in this run (--validation-fraction 0); evaluate --split test instead.")
    try:
        model = load_spiking_model(model_path, f"Rewrite it with `tess train --resume {run_dir}`.")
    except ModelFileError as error:  # a damaged or foreign file
        fail(str(error))
    first = model.blocks[0].name
    expected = tuple(model.step_input_shapes[first][1:])
    if tuple(splits.input_shape) != expected or splits.num_classes != model.num_classes:
        fail(
            f"{name} has inputs {splits.input_shape} and {splits.num_classes} classes, but the model in {run_dir} "
            f"takes {expected} with {model.num_classes} classes; choose a dataset with the same shapes."
        )

    result = evaluate(model, data.make_tf_dataset(splits, split, batch_size or config.batch_size))
    labels, predictions = result["labels"], result["predictions"]
    classes = splits.num_classes
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    support = matrix.sum(axis=1)
    per_class = np.divide(np.diag(matrix), support, out=np.full(classes, np.nan), where=support > 0)
    accuracy = float(np.mean(labels == predictions))
    layer_names = [layer.name for layer in model.spiking_layers]

    report = {
        "dataset": name,
        "split": split,
        "samples": int(len(labels)),
        "accuracy": accuracy,
        "loss": result["loss"],
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion_matrix": matrix.tolist(),
        "spike_rates": {layer: float(rate) for layer, rate in zip(layer_names, result["spike_rates"])},
    }
    unwritten = _save_outputs(Path(run_dir), matrix, f"{name} ({split}): accuracy {accuracy:.4f}", report)
    _print_report(report, run_dir, written=not unwritten)
    if unwritten:
        fail(
            f"the evaluation above is complete, but {' and '.join(unwritten)}. Make {run_dir} writable "
            "(or free space) and run `tess eval` again to keep the files."
        )


def _save_outputs(run_dir, matrix, title, report):
    """Write confusion.png and eval.json (atomically); returns what could not be written."""
    unwritten = []

    def write_json(path):
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(path)

    for path, write in ((run_dir / "confusion.png", lambda p: plot_confusion(p, matrix, title)), (run_dir / "eval.json", write_json)):
        try:
            write(path)
        except OSError as error:
            unwritten.append(f"{path} could not be written ({error.strerror or error})")
            try:  # no partial file left behind (disk full)
                Path(str(path) + ".tmp").unlink(missing_ok=True)
            except OSError:
                pass
    return unwritten


def _print_report(report, run_dir, written=True):
    from rich.console import Console
    from rich.table import Table

    out = Console()
    out.print(
        f"[bold]{report['dataset']}[/]: accuracy {report['accuracy']:.4f} on {report['samples']} "
        f"{report['split']} samples (loss {report['loss']:.4f})"
    )
    matrix = report["confusion_matrix"]
    classes = len(matrix)
    per_class = Table(title="Per-class accuracy")
    for column in ("class", "samples", "correct", "accuracy"):
        per_class.add_column(column, justify="right")
    for index, accuracy in enumerate(report["per_class_accuracy"]):
        per_class.add_row(
            str(index), str(sum(matrix[index])), str(matrix[index][index]), "-" if accuracy is None else f"{accuracy:.4f}"
        )
    out.print(per_class)
    if classes <= 20:
        confusion = Table(title="Confusion matrix (rows: true class, columns: predicted)")
        confusion.add_column("", style="bold", justify="right")
        for j in range(classes):
            confusion.add_column(str(j), justify="right")
        for i, row in enumerate(matrix):
            confusion.add_row(str(i), *(f"[bold]{v}[/]" if i == j else (str(v) if v else "·") for j, v in enumerate(row)))
        out.print(confusion)
    rates = Table(title="Spike rate per layer", min_width=32)
    rates.add_column("layer")
    rates.add_column("rate", justify="right")
    for layer, rate in report["spike_rates"].items():
        rates.add_row(layer, f"{rate:.4f}")
    out.print(rates)
    if written:
        out.print(f"wrote {Path(run_dir) / 'confusion.png'} and {Path(run_dir) / 'eval.json'}")
