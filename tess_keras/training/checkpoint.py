"""Checkpoints: the model's and the optimizer's variables plus the loop's
state (``TrainingState``), written atomically and restored exactly."""

import io
import json

import numpy as np

from tess_keras.training.config import ConfigError
from tess_keras.training.rundir import atomic_write

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_VERSION = 1


class TrainingState:
    """What a checkpoint restores besides the variables.

    Args:
        epochs_done: finished epochs.
        batches_done: batches of the next epoch already trained (> 0 only
            for a checkpoint written on interruption).
        partial_seconds: training time already spent in that epoch.
        history: one dict per finished epoch (``METRIC_COLUMNS``).
        scheduler: ReduceLROnPlateau's ``best``, ``wait``, ``cooldown_counter``.
    """

    def __init__(self, epochs_done=0, batches_done=0, partial_seconds=0.0, history=None, scheduler=None):
        self.epochs_done = epochs_done
        self.batches_done = batches_done
        self.partial_seconds = partial_seconds
        self.history = history or []
        self.scheduler = scheduler or {"best": None, "wait": 0, "cooldown_counter": 0}

    def as_dict(self):
        return dict(vars(self))


def save_checkpoint(path, model, state, metric_values=None):
    """Write weights, optimizer variables, running metrics (mid-epoch only)
    and ``state`` to ``path`` atomically (one ``.npz``).

    Args:
        path: the checkpoint file.
        model: a compiled model whose optimizer is built.
        state: the ``TrainingState``.
        metric_values: the running metrics' variable values (mid-epoch).
    """
    arrays = {f"model/{i}": np.asarray(v) for i, v in enumerate(model.get_weights())}
    arrays.update({f"optimizer/{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    for i, value in enumerate(metric_values or []):
        arrays[f"metrics/{i}"] = np.asarray(value)
    meta = {"version": CHECKPOINT_VERSION, **state.as_dict()}
    arrays["state"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path, model):
    """Restore ``model`` (weights and optimizer) from ``path``.

    Args:
        path: a checkpoint written by ``save_checkpoint``.
        model: a model built like the one that was saved.

    Returns:
        ``(TrainingState, metric_values)``.

    Raises:
        ConfigError: the checkpoint is unreadable or does not fit the model.
    """
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the checkpoint {path}: {error}.") from None
    meta = json.loads(arrays.pop("state").tobytes().decode())
    if meta.pop("version", None) != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} was written by another version of tess-keras and cannot be resumed.")

    def group(prefix):
        items = [(int(k.split("/")[1]), v) for k, v in arrays.items() if k.startswith(prefix + "/")]
        return [v for _, v in sorted(items, key=lambda item: item[0])]

    weights, optimizer_values = group("model"), group("optimizer")
    model_shapes = [tuple(w.shape) for w in model.weights]
    optimizer_shapes = [tuple(v.shape) for v in model.optimizer.variables]
    if [w.shape for w in weights] != model_shapes or [v.shape for v in optimizer_values] != optimizer_shapes:
        raise ConfigError(f"{path} does not match the model of this run's configuration; it cannot be resumed.")
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_values):
        variable.assign(value)
    return TrainingState(**meta), group("metrics")
