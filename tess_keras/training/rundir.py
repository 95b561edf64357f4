"""The run directory: creating and checking it, atomic writes, the saved
configuration, ``metrics.csv``, TensorBoard scalars and the learning curves."""

import csv
import dataclasses
import io
import json
import os
from pathlib import Path

from tess_keras.training.config import FIELDS, ConfigError, TrainConfig

CONFIG = "config.json"
METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def atomic_write(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename, so
    that ``path`` always holds either the old or the new content.

    Args:
        path: the file to write.
        data: ``bytes`` or ``str`` (written as UTF-8).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def prepare_run_dir(out, resume, holds_run=()):
    """Create (or check) the run directory.

    Args:
        out: the run directory.
        resume: whether the run continues an existing one.
        holds_run: further names (besides ``config.json``) whose presence
            means ``out`` already holds a run.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        ConfigError: ``out`` cannot be written, or holds another run and
            ``resume`` is False.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write the run directory {out}: {error.strerror or error}. Choose another --out.") from None
    if not resume and any((out / name).exists() for name in (CONFIG, *holds_run)):
        raise ConfigError(
            f"{out} already holds a training run. Continue it with `tess train --resume {out}`, "
            "or choose another --out."
        )
    return out


def save_config(out, config):
    """Write ``config`` (a ``TrainConfig``) to ``out/config.json``."""
    atomic_write(Path(out) / CONFIG, json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def load_saved_config(run_dir):
    """The ``TrainConfig`` stored in ``run_dir``.

    Args:
        run_dir: a directory written by ``tess train``.

    Raises:
        ConfigError: ``run_dir`` is missing, has no ``config.json``, or it
            is damaged.
    """
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a run directory (it does not exist).")
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory: it has no {CONFIG}. Pass the --out of a `tess train` run.")
    try:
        values = json.loads(path.read_text())
        return TrainConfig(**{k: v for k, v in values.items() if k in FIELDS})
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{path} is damaged ({error}); the run cannot be resumed.") from None


def write_metrics(path, history):
    """Write ``metrics.csv``: a header of ``METRIC_COLUMNS``, one row per epoch.

    ``val_loss`` / ``val_accuracy`` are the validation split's (empty cells
    when the run has none); the test split is not in this file.

    Args:
        path: the CSV file.
        history: one dict per finished epoch, keyed by ``METRIC_COLUMNS``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for row in history:
        writer.writerow(
            [row["epoch"]]
            + ["" if row[k] is None else f"{row[k]:.6f}" for k in METRIC_COLUMNS[1:5]]
            + [f"{row['lr']:.6g}", f"{row['seconds']:.3f}"]
        )
    atomic_write(path, buffer.getvalue())


class TensorBoardLog:
    """Epoch scalars as TensorBoard event files in ``logs/train`` and
    ``logs/validation``.

    ``tf.summary.scalar`` needs the ``tensorboard`` package, which the
    TensorFlow 2.21 CPU wheel no longer installs; ``tf.summary.write`` with
    the scalars plugin's metadata is what ``tf.summary.scalar`` itself
    writes, so the files read the same in TensorBoard without the extra
    package.

    Args:
        out: the run directory, or ``None`` for a no-op log (the workers
            other than the chief write nothing).
    """

    def __init__(self, out):
        import tensorflow as tf

        if out is None:
            self.train = self.validation = tf.summary.create_noop_writer()
        else:
            self.train = tf.summary.create_file_writer(str(Path(out) / "logs" / "train"))
            self.validation = tf.summary.create_file_writer(str(Path(out) / "logs" / "validation"))

    def write(self, row):
        """Log one ``METRIC_COLUMNS`` row at step ``row["epoch"]``."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        values = (
            (self.train, "epoch_loss", "loss"),
            (self.train, "epoch_accuracy", "accuracy"),
            (self.train, "learning_rate", "lr"),
            (self.validation, "epoch_loss", "val_loss"),
            (self.validation, "epoch_accuracy", "val_accuracy"),
        )
        for writer, tag, key in values:
            if row[key] is None:  # no validation split
                continue
            with writer.as_default():
                tf.summary.write(tag, tf.constant(row[key], tf.float32), step=row["epoch"],
                                 metadata=metadata.SerializeToString())
        self.train.flush()
        self.validation.flush()

    def close(self):
        self.train.close()
        self.validation.close()


def plot_learning_curves(path, history, title=""):
    """Loss and accuracy per epoch of the training and the validation split,
    as a PNG (the test split is evaluated only once, so it is not a curve).

    Args:
        path: the PNG file (written atomically).
        history: one ``METRIC_COLUMNS`` dict per epoch.
        title: the figure's title (dataset, rule, model).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [row["epoch"] for row in history]
    validation = any(row["val_loss"] is not None for row in history)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    figure.suptitle(title + ("" if validation else " (no validation split)"))
    for axis, key, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        axis.plot(epochs, [row[key] for row in history], marker="o", label="train")
        if validation:
            axis.plot(epochs, [row["val_" + key] for row in history], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
