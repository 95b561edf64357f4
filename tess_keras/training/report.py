"""Reporting a run: the progress ``Reporter`` interface and the final
outputs (``model.keras``, ``learning_curves.png``, ``summary.json``)."""

import dataclasses
import json
import os

import numpy as np

from tess_keras.training.rundir import atomic_write, plot_learning_curves


class Reporter:
    """Receives progress from ``train``; the CLI draws it with rich.

    Every method is optional to override.
    """

    def start(self, config, steps_per_epoch, state):
        """Called once, before the first (or resumed) epoch."""

    def batch(self, epoch, step, steps, logs, samples_per_second, eta_seconds):
        """After each training batch. ``epoch`` and ``step`` are 1-based;
        ``logs`` holds the epoch's running ``loss`` and ``accuracy`` and the
        current ``lr``."""

    def epoch_end(self, row, eta_seconds):
        """After each epoch with its ``METRIC_COLUMNS`` row."""


def weights_fingerprint(model):
    """SHA-256 of the model's weights: equal on every worker of a run."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def finish(out, config, model, state, write=True):
    """The run's summary.

    Args:
        out: the run directory.
        config: the run's ``TrainConfig``.
        model: the trained model.
        state: the final ``TrainingState``.
        write: also write ``model.keras``, ``learning_curves.png`` and
            ``summary.json`` (the chief does).

    Returns:
        The summary dict.
    """
    history = state.history
    if write:
        tmp_model = out / "model.tmp.keras"
        model.save(tmp_model)
        os.replace(tmp_model, out / "model.keras")
        plot_learning_curves(out / "learning_curves.png", history)
    last = history[-1]
    summary = {
        **dataclasses.asdict(config),
        "test_accuracy": last["val_accuracy"],
        "test_loss": last["val_loss"],
        "best_test_accuracy": max(row["val_accuracy"] for row in history),
        "final_lr": float(model.optimizer.learning_rate.numpy()),
        "parameters": int(model.count_params()),
        "train_seconds": round(sum(row["seconds"] for row in history), 3),
        "weights_sha256": weights_fingerprint(model),
    }
    if write:
        atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
