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

    def data(self, sizes, notes):
        """Called once after loading: ``sizes`` is the number of samples of
        each split (``{"train": n, "validation": n, "test": n}``), ``notes``
        a list of lines to show (no validation split, incomplete data...)."""

    def start(self, config, steps_per_epoch, state):
        """Called once, before the first (or resumed) epoch."""

    def batch(self, epoch, step, steps, logs, samples_per_second, eta_seconds):
        """After each training batch. ``epoch`` and ``step`` are 1-based;
        ``logs`` holds the epoch's running ``loss`` and ``accuracy`` and the
        current ``lr``."""

    def epoch_end(self, row, eta_seconds):
        """After each epoch with its ``METRIC_COLUMNS`` row (``val_loss`` and
        ``val_accuracy`` are ``None`` without a validation split)."""


def weights_fingerprint(model):
    """SHA-256 of the model's weights: equal on every worker of a run."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


SELECTION = (
    "the model after the last epoch; the validation split drove the learning-rate schedule and the NaN stop, "
    "and no epoch was picked by a validation or test score"
)
SELECTION_WITHOUT_VALIDATION = (
    "the model after the last epoch; there is no validation split, so no schedule, check or selection used one"
)


def finish(out, config, model, state, splits, test, write=True):
    """The run's summary, after the test split's one evaluation.

    Args:
        out: the run directory.
        config: the run's ``TrainConfig``.
        model: the trained model (the one the run keeps).
        state: the final ``TrainingState``.
        splits: the run's ``DatasetSplits`` (only class counts and the
            loading notes are read here).
        test: ``{"loss", "accuracy"}`` of the test split, or ``None`` when
            the dataset has no test samples.
        write: also write ``model.keras``, ``learning_curves.png`` and
            ``summary.json`` (the chief does).

    Returns:
        The summary dict: the configuration, ``validation_accuracy`` and
        ``validation_loss`` of the kept model (``None`` without validation),
        ``test_accuracy`` and ``test_loss``, ``selected_epoch`` and
        ``selection`` (which model was kept and why), ``class_counts`` per
        split, ``skipped`` / ``empty`` / ``incomplete`` from loading,
        ``final_lr``, ``parameters``, ``train_seconds``, ``weights_sha256``.
    """
    history = state.history
    last = history[-1]
    if write:
        tmp_model = out / "model.tmp.keras"
        model.save(tmp_model)
        os.replace(tmp_model, out / "model.keras")
        title = f"{config.dataset}: {config.rule} (alpha_post {config.alpha_post:g}), {config.model}"
        plot_learning_curves(out / "learning_curves.png", history, title)
    summary = {
        **dataclasses.asdict(config),
        "validation_accuracy": last["val_accuracy"],
        "validation_loss": last["val_loss"],
        "test_accuracy": None if test is None else test["accuracy"],
        "test_loss": None if test is None else test["loss"],
        "selected_epoch": last["epoch"],
        "selection": SELECTION if last["val_loss"] is not None else SELECTION_WITHOUT_VALIDATION,
        "class_counts": splits.class_counts(),
        "skipped": dict(splits.skipped),
        "empty": dict(splits.empty),
        "incomplete": list(splits.incomplete),
        "final_lr": float(model.optimizer.learning_rate.numpy()),
        "parameters": int(model.count_params()),
        "train_seconds": round(sum(row["seconds"] for row in history), 3),
        "weights_sha256": weights_fingerprint(model),
    }
    if write:
        atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
