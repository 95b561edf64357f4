"""Checkpoints: the model's and the optimizer's variables plus the loop's
state (``TrainingState``), written atomically and restored exactly.

A checkpoint is a directory::

    checkpoint/
        variables.index, variables.data-*   a ``tf.train.Checkpoint``
        state.json                          version, TrainingState, the
                                            running metrics, variable names

The variables are keyed by name, not position: a model weight by its Keras
path below the model (``conv1/kernel``), an optimizer variable by its path
below the optimizer (``optimizer/iteration``,
``optimizer/mcu_net_conv1_kernel_momentum``; under ``mixed_float16`` the
wrapped Adam's are ``inner_optimizer/...``). Restoring checks that every
saved variable finds its match and every variable of the model is restored;
otherwise the checkpoint does not fit the model.

Atomic replacement: the new checkpoint is written complete (and synced) into
``checkpoint.tmp/``; then ``checkpoint/`` is renamed ``checkpoint.old/``,
``checkpoint.tmp/`` renamed ``checkpoint/`` and ``checkpoint.old/``
removed. A process killed at any point leaves a complete previous checkpoint:
``checkpoint/``, or ``checkpoint.old/`` during the instant between the two
renames, which ``resolve_checkpoint`` then picks. Leftovers of a killed write
are removed by the next save.
"""

import json
import os
import shutil
from pathlib import Path

from tess_keras.training.config import ConfigError
from tess_keras.training.rundir import atomic_write

CHECKPOINT = "checkpoint"
CHECKPOINT_VERSION = 2
STATE = "state.json"
VARIABLES = "variables"


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


def _below(path, owner):
    """``path`` without its leading ``owner/``."""
    return path[len(owner) + 1:] if path.startswith(owner + "/") else path


def named_variables(model):
    """The variables a checkpoint holds, keyed by name.

    Args:
        model: a compiled model whose optimizer is built.

    Returns:
        ``(model_variables, optimizer_variables)``: two dicts of name to
        Keras variable, in the model's and the optimizer's order.

    Raises:
        ConfigError: two variables share a name (the checkpoint could not
            tell them apart).
    """
    weights = {_below(v.path, model.name): v for v in model.weights}
    owners = {model.optimizer.name: "optimizer"}
    inner = getattr(model.optimizer, "inner_optimizer", None)
    if inner is not None:
        owners[inner.name] = "inner_optimizer"
    optimizer = {}
    for variable in model.optimizer.variables:
        owner, _, rest = variable.path.partition("/")
        optimizer[f"{owners.get(owner, owner)}/{rest}"] = variable
    if len(weights) != len(model.weights) or len(optimizer) != len(model.optimizer.variables):
        raise ConfigError(f"the variables of model {model.name} do not have unique names; it cannot be checkpointed.")
    return weights, optimizer


def metric_names(model):
    """Names of the running metrics' variables (``loss/total``, ...), in order."""
    return [v.path for m in model.metrics for v in m.variables]


def _sync_dir(directory):
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_tree(directory):
    for path in Path(directory).iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _sync_dir(directory)


def _key(group, name):
    """The ``tf.train.Checkpoint`` key of variable ``name`` in ``group``
    (TensorFlow escapes ``.`` as ``..`` and ``/`` as ``.S``)."""
    return f"{group}/{name.replace('.', '..').replace('/', '.S')}/.ATTRIBUTES/VARIABLE_VALUE"


def save_checkpoint(path, model, state, metric_values=None):
    """Write the model's and optimizer's variables, the running metrics
    (mid-epoch only) and ``state`` to the directory ``path``, atomically.

    Args:
        path: the checkpoint directory (``RUN_DIR/checkpoint``).
        model: a compiled model whose optimizer is built.
        state: the ``TrainingState``.
        metric_values: values of the running metrics' variables, in
            ``metric_names(model)`` order (mid-epoch checkpoints).
    """
    import tensorflow as tf

    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    weights, optimizer = named_variables(model)
    names = metric_names(model)
    meta = {
        "version": CHECKPOINT_VERSION,
        "state": state.as_dict(),
        "metrics": {name: float(value) for name, value in zip(names, metric_values or [])},
        "variables": {"model": list(weights), "optimizer": list(optimizer)},
    }
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed write left
    try:
        tmp.mkdir()
        tf.train.Checkpoint(model=weights, optimizer=optimizer).write(str(tmp / VARIABLES))
        atomic_write(tmp / STATE, json.dumps(meta) + "\n")
        _sync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves the previous checkpoint and no debris
        raise
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(path, old)
    os.rename(tmp, path)
    _sync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path):
    """The complete checkpoint at ``path``, or ``None`` if there is none.

    Args:
        path: the checkpoint directory.

    Returns:
        ``path``, or ``path.old`` when a write was killed between its two
        renames (``path`` then does not exist), or ``None``.
    """
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def read_state(path):
    """The parsed ``state.json`` of the checkpoint at ``path``.

    Raises:
        ConfigError: there is no checkpoint, it is unreadable, or from
            another version of tess-keras.
    """
    found = resolve_checkpoint(path)
    if found is None:
        raise ConfigError(f"{path} holds no checkpoint.")
    try:
        meta = json.loads((found / STATE).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot read the checkpoint {found}: its {STATE} is damaged ({error}); the run cannot be resumed "
            "from it. Start a new run with another --out."
        ) from None
    if not isinstance(meta, dict) or meta.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{found} was written by another version of tess-keras and cannot be resumed.")
    fields = {"state": dict, "metrics": dict, "variables": dict}
    if any(not isinstance(meta.get(key), kind) for key, kind in fields.items()) or set(meta["variables"]) != {
        "model", "optimizer"
    }:
        raise ConfigError(f"the checkpoint {found} is damaged ({STATE} lacks its fields); the run cannot be resumed.")
    return meta


def read_arrays(path):
    """The saved variables as numpy arrays, without a model.

    Args:
        path: the checkpoint directory.

    Returns:
        ``{"model": {name: array}, "optimizer": {name: array}}``, each in
        the saved model's and optimizer's order.
    """
    import tensorflow as tf

    meta = read_state(path)
    reader = tf.train.load_checkpoint(str(resolve_checkpoint(path) / VARIABLES))
    return {
        group: {name: reader.get_tensor(_key(group, name)) for name in meta["variables"][group]}
        for group in ("model", "optimizer")
    }


def load_checkpoint(path, model):
    """Restore ``model`` (weights and optimizer) from the checkpoint ``path``.

    Args:
        path: a checkpoint written by ``save_checkpoint``.
        model: a model built like the one that was saved.

    Returns:
        ``(TrainingState, metric_values)``; ``metric_values`` in
        ``metric_names(model)`` order (empty for an end-of-epoch checkpoint).

    Raises:
        ConfigError: the checkpoint is unreadable or does not fit the model.
    """
    import tensorflow as tf

    meta = read_state(path)
    found = resolve_checkpoint(path)
    weights, optimizer = named_variables(model)
    mismatch = ConfigError(f"{found} does not match the model of this run's configuration; it cannot be resumed.")
    if meta["variables"] != {"model": list(weights), "optimizer": list(optimizer)}:
        raise mismatch
    try:
        status = tf.train.Checkpoint(model=weights, optimizer=optimizer).read(str(found / VARIABLES))
        status.assert_consumed()
    except (ValueError, AssertionError) as error:
        raise mismatch from error
    except tf.errors.OpError as error:
        raise ConfigError(
            f"cannot read the checkpoint {found}: it is damaged or incomplete ({error.message}); the run cannot "
            "be resumed from it. Start a new run with another --out."
        ) from None
    except (IndexError, OSError) as error:  # a truncated variables.data file: "Read less bytes than requested"
        raise ConfigError(
            f"cannot read the checkpoint {found}: its variables file is damaged ({error}); the run cannot be "
            "resumed from it. Start a new run with another --out."
        ) from None
    saved_metrics = meta["metrics"]
    values = [saved_metrics[name] for name in metric_names(model) if name in saved_metrics]
    try:
        state = TrainingState(**meta["state"])
    except TypeError:
        raise ConfigError(f"the checkpoint {found} is damaged ({STATE} has unknown fields); it cannot be resumed.") from None
    return state, values
