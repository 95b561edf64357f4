"""Train a spiking model on a dataset, with exact checkpoint/resume.

A run directory holds:

    config.json           the run's ``TrainConfig`` (T resolved)
    checkpoint.npz        weights, optimizer state (Adam moments, iteration,
                          learning rate), ReduceLROnPlateau state, the epoch
                          history and the data position; rewritten atomically
                          at the end of every epoch and on interruption
    metrics.csv           one row per finished epoch
    logs/                 TensorBoard event files (train/ and validation/)
    summary.json          final figures and the configuration
    model.keras           the trained model
    learning_curves.png   loss and accuracy per epoch

The order of the training samples in epoch ``e`` and its augmentation are
seeded from ``(seed, e)``, so an epoch can be replayed exactly: resuming from a checkpoint taken after
``b`` batches of epoch ``e`` rebuilds that epoch's data, skips ``b`` batches
and continues with the saved weights, optimizer, scheduler and running
metrics. An uninterrupted run and an interrupted-then-resumed run with the
same seed compute the same numbers.
"""

import csv
import dataclasses
import io
import json
import math
import os
import signal
import time
import tomllib
from pathlib import Path

import numpy as np

METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"
CHECKPOINT_VERSION = 1
# Options a resumed run may change; every other option is part of the run.
RESUMABLE_CHANGES = ("epochs", "data_dir")


class ConfigError(ValueError):
    """A training option is invalid; the message names it and the fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGINT after writing a checkpoint.

    Attributes:
        run_dir: the run directory to pass to ``--resume``.
        epoch: the (1-based) epoch that was in progress.
        batch: batches of that epoch already done.
    """

    def __init__(self, run_dir, epoch, batch):
        super().__init__(f"interrupted at epoch {epoch}, batch {batch}")
        self.run_dir, self.epoch, self.batch = run_dir, epoch, batch


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        dataset: dataset name (``tess_keras.data.LOADERS``).
        rule: ``tess``, ``stllr`` or ``bptt``.
        model: ``mcu`` or ``vgg9`` (``tess_keras.models.MODELS``).
        epochs: epochs to train in total.
        batch_size: samples per batch.
        time_steps: T; 0 means the dataset's default.
        lr: Adam's initial learning rate.
        alpha_post: TESS/S-TLLR non-causal term weight (spec: -1, 0 or +1).
        seed: seed of the weights, the data order and augmentation.
        data_dir: where datasets live ("" = the loader's default).
        out: the run directory.
        limit_train: use only the first N training samples (0 = all); for
            quick experiments and tests.
        limit_test: use only the first N test samples (0 = all).
        strategy: ``default`` (one device), ``mirrored`` (every local GPU)
            or ``multi-worker`` (machines listed in ``TF_CONFIG``); see
            ``tess_keras.distribute``. ``batch_size`` is the global batch.
        precision: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        jit: compile the rule's gradient computation with XLA.
    """

    dataset: str = "digits"
    rule: str = "tess"
    model: str = "mcu"
    epochs: int = 20
    batch_size: int = 32
    time_steps: int = 0
    lr: float = 1e-3
    alpha_post: float = 1.0
    seed: int = 0
    data_dir: str = ""
    out: str = "runs/latest"
    limit_train: int = 0
    limit_test: int = 0
    strategy: str = "default"
    precision: str = "float32"
    jit: bool = False


FIELDS = {field.name: field.type for field in dataclasses.fields(TrainConfig)}


# -- building a configuration ---------------------------------------------------


def read_config_file(path):
    """Options from a TOML recipe file (keys are ``TrainConfig`` fields;
    dashes or underscores), validated for names and types."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}.") from None
    options = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"config file {path}: unknown key {key!r}; valid keys: {', '.join(FIELDS)}.")
        kind = getattr(FIELDS[name], "__name__", FIELDS[name])
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"str": str, "int": int, "float": float, "bool": bool}[kind]
        if not isinstance(value, expected) or (isinstance(value, bool) and kind != "bool"):
            wanted = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}[kind]
            raise ConfigError(f"config file {path}: {key} must be {wanted}, got {value!r}.")
        options[name] = value
    return options


def resolve_config(options, config_file=None):
    """The run's ``TrainConfig`` from the dataset's recipe, then the config
    file, then explicit ``options`` (a dict; ``None`` values = not given).

    Raises:
        ConfigError: a value is invalid (the message lists valid ones).
    """
    from tess_keras.recipes import get_recipe

    chosen = read_config_file(config_file) if config_file else {}
    chosen.update({k: v for k, v in options.items() if v is not None})
    dataset = chosen.get("dataset", TrainConfig.dataset)
    recipe = get_recipe(dataset)
    values = {
        "model": recipe.model,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "time_steps": recipe.time_steps,
        "lr": recipe.lr,
        "alpha_post": recipe.alpha_post,
    }
    values.update(chosen)
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config):
    """Check names and numbers of ``config``; raises ``ConfigError``."""
    from tess_keras import data, distribute, models, rules

    if config.dataset not in data.LOADERS:
        raise ConfigError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(sorted(data.LOADERS))}.")
    if config.rule not in rules.RULES:
        raise ConfigError(f"unknown rule {config.rule!r}; choose one of: {', '.join(rules.RULES)}.")
    if config.model not in models.MODELS:
        raise ConfigError(f"unknown model {config.model!r}; choose one of: {', '.join(models.MODELS)}.")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}.")
    for name in ("time_steps", "limit_train", "limit_test"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(config, name)}.")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f"--lr must be a positive finite number, got {config.lr:g}.")
    if not (math.isfinite(config.alpha_post) and -1.0 <= config.alpha_post <= 1.0):
        raise ConfigError(f"--alpha-post must be between -1 and 1 (the paper uses -1, 0 or 1), got {config.alpha_post:g}.")
    try:
        if config.strategy not in distribute.STRATEGIES:
            raise distribute.DistributeError(
                f"unknown --strategy {config.strategy!r}; choose one of: {', '.join(distribute.STRATEGIES)}."
            )
        distribute.check_precision(config.precision)
        if config.strategy == "multi-worker":
            distribute.read_tf_config()
    except distribute.DistributeError as error:
        raise ConfigError(str(error)) from None


def check_compatible(saved, options, config_file=None):
    """The configuration of a resumed run: ``saved`` with only ``epochs``
    and ``data_dir`` allowed to change. Raises ``ConfigError`` if an
    explicit option (or config-file value) differs from the saved run."""
    chosen = read_config_file(config_file) if config_file else {}
    chosen.update({k: v for k, v in options.items() if v is not None})
    chosen.pop("out", None)
    changes = {}
    for name, value in chosen.items():
        if name in RESUMABLE_CHANGES:
            changes[name] = value
            continue
        current = getattr(saved, name)
        if name == "time_steps" and value == 0:
            continue
        if value != current:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the run being resumed ({flag} {current}); a resumed run keeps its "
                f"configuration (only --epochs and --data-dir may change). Drop {flag}, or start a new run with "
                "another --out."
            )
    config = dataclasses.replace(saved, **changes)
    validate(config)
    return config


# -- the run directory --------------------------------------------------------


def atomic_write(path, data):
    """Write bytes or text to ``path`` through a temporary file + rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def prepare_run_dir(out, resume):
    """Create (or check) the run directory; raises ``ConfigError`` if it
    cannot be written, or holds another run and ``resume`` is False."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write the run directory {out}: {error.strerror or error}. Choose another --out.") from None
    if not resume and ((out / CHECKPOINT).exists() or (out / CONFIG).exists()):
        raise ConfigError(
            f"{out} already holds a training run. Continue it with `tess train --resume {out}`, "
            "or choose another --out."
        )
    return out


def load_saved_config(run_dir):
    """The ``TrainConfig`` stored in ``run_dir`` (``ConfigError`` if none)."""
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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for row in history:
        writer.writerow(
            [row["epoch"]]
            + [f"{row[k]:.6f}" for k in METRIC_COLUMNS[1:5]]
            + [f"{row['lr']:.6g}", f"{row['seconds']:.3f}"]
        )
    atomic_write(path, buffer.getvalue())


def plot_learning_curves(path, history):
    """Loss and accuracy (train and validation) per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, label in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
        axis.plot(epochs, [row[key] for row in history], marker="o", label="train")
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


# -- checkpoints ------------------------------------------------------------------


class TrainingState:
    """What a checkpoint restores besides the variables.

    Attributes:
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
    and ``state`` to ``path`` atomically (one ``.npz``)."""
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
    """Restore ``model`` (weights and optimizer) from ``path``; returns
    ``(TrainingState, metric_values)``. Raises ``ConfigError`` when the
    checkpoint does not fit the model."""
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


# -- training ------------------------------------------------------------------------


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


def make_rule(name, alpha_post):
    from tess_keras import rules

    if name in ("tess", "stllr"):
        return rules.get(name, alpha_post=alpha_post)
    return rules.get(name)


def epoch_seed(seed, epoch):
    """Seed of epoch ``epoch``'s data order and augmentation."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


def limit_splits(splits, config):
    limit_train, limit_test = config.limit_train, config.limit_test
    if not (limit_train or limit_test):
        return splits
    return dataclasses.replace(
        splits,
        x_train=splits.x_train[:limit_train] if limit_train else splits.x_train,
        y_train=splits.y_train[:limit_train] if limit_train else splits.y_train,
        x_test=splits.x_test[:limit_test] if limit_test else splits.x_test,
        y_test=splits.y_test[:limit_test] if limit_test else splits.y_test,
    )


def epoch_dataset(splits, config, epoch):
    """Epoch ``epoch``'s training batches, shuffled and augmented with a seed
    drawn from ``(seed, epoch)``: the same epoch always yields the same
    batches, which is what makes resuming exact."""
    import tensorflow as tf

    from tess_keras import data

    seed = epoch_seed(config.seed, epoch)
    tf.random.set_seed(seed)
    return data.make_tf_dataset(splits, "train", config.batch_size, shuffle=True, seed=seed, augment=True)


class _InterruptFlag:
    """Turns SIGINT into a flag the training loop checks between batches."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _finite(value):
    return math.isfinite(float(value))


def train(config, reporter=None, resume=False):
    """Train as configured (or continue ``config.out`` when ``resume``).

    Args:
        config: a validated ``TrainConfig`` (see ``resolve_config`` and
            ``check_compatible``).
        reporter: a ``Reporter`` for progress (optional).
        resume: continue from ``config.out/checkpoint.npz``.

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        ConfigError: the run directory or checkpoint is unusable.
        tess_keras.data.DatasetError: the dataset is missing.
        TrainingInterrupted: SIGINT; a checkpoint was written first.
        TrainingDiverged: the loss became NaN/inf; the last checkpoint is kept.
    """
    import keras
    import tensorflow as tf

    from tess_keras import data, distribute, models

    # First: multi-worker starts this worker's collective-ops server.
    try:
        strategy = distribute.make_strategy(config.strategy)
    except distribute.DistributeError as error:
        raise ConfigError(str(error)) from None
    # Only the chief writes; other workers train the same weights silently.
    chief = distribute.is_chief(strategy)
    reporter = reporter or Reporter()
    existed = Path(config.out).exists()
    out = prepare_run_dir(config.out, resume) if chief else Path(config.out)
    keras.utils.set_random_seed(config.seed)
    try:
        splits = data.load_dataset(config.dataset, config.data_dir or None, config.time_steps or None, config.seed)
    except data.DatasetError:
        if chief and not existed and not any(out.iterdir()):
            out.rmdir()  # leave no empty run directory behind
        raise
    splits = limit_splits(splits, config)
    if resume and config.time_steps and splits.time_steps != config.time_steps:
        raise ConfigError(f"the dataset gave T={splits.time_steps} but the run uses T={config.time_steps}.")
    config = dataclasses.replace(config, time_steps=splits.time_steps)
    if chief and not resume:
        atomic_write(out / CONFIG, json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    with strategy.scope(), distribute.precision_policy(config.precision):
        rule = make_rule(config.rule, config.alpha_post)
        model = models.build_model(config.model, splits.input_shape, splits.num_classes, rule)
        model.compile(optimizer=keras.optimizers.Adam(config.lr))  # a LossScaleOptimizer under mixed_float16
        model.optimizer.build(model.trainable_variables)
    scheduler = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)
    scheduler.set_model(model)
    scheduler.on_train_begin()

    state, metric_values = TrainingState(), []
    checkpoint_path = out / CHECKPOINT
    # A run killed before its first checkpoint resumes from the beginning.
    if resume and checkpoint_path.exists():
        state, metric_values = load_checkpoint(checkpoint_path, model)
        if state.epochs_done > config.epochs:
            raise ConfigError(
                f"--epochs {config.epochs} is less than the {state.epochs_done} epochs this run has already trained."
            )
    if not distribute.same_on_all_workers(strategy, (state.epochs_done, state.batches_done)):
        raise ConfigError(
            f"the workers found different checkpoints in {out}; every worker must resume from the same run "
            "directory. Put --out on storage all machines share, or start a new run."
        )
    for key, value in state.scheduler.items():
        setattr(scheduler, key, value)

    train_step = distribute.make_train_step(model, strategy, config.jit)
    test_step = distribute.make_test_step(model, strategy, config.jit)
    test_ds = distribute.distribute_dataset(strategy, data.make_tf_dataset(splits, "test", config.batch_size))
    steps = math.ceil(len(splits.y_train) / config.batch_size)
    if chief:
        train_writer = tf.summary.create_file_writer(str(out / "logs" / "train"))
        val_writer = tf.summary.create_file_writer(str(out / "logs" / "validation"))
    else:
        train_writer = val_writer = tf.summary.create_noop_writer()
    reporter.start(config, steps, state)
    epoch_times = [row["seconds"] for row in state.history]

    with _InterruptFlag() as interrupt:
        for epoch in range(state.epochs_done, config.epochs):
            for metric in model.metrics:
                metric.reset_state()
            start_batch = state.batches_done
            if start_batch:  # resuming mid-epoch: restore the running means
                for variable, value in zip((v for m in model.metrics for v in m.variables), metric_values):
                    variable.assign(value)
            lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            dataset = distribute.distribute_dataset(strategy, epoch_dataset(splits, config, epoch).skip(start_batch))
            seconds_before = state.partial_seconds
            started = time.perf_counter()
            samples = 0
            logs = {}
            for step, batch in enumerate(dataset, start=start_batch + 1):
                logs = {k: float(v) for k, v in train_step(batch).items()}
                samples += int(logs.pop("samples"))
                if not _finite(logs["loss"]):
                    raise TrainingDiverged(_diverged_message(out, logs["loss"], epoch + 1, step, state.epochs_done))
                elapsed = time.perf_counter() - started
                rate = samples / elapsed if elapsed > 0 else 0.0
                per_batch = elapsed / (step - start_batch)
                eta = (steps - step) * per_batch + _mean_epoch(epoch_times, steps * per_batch) * (config.epochs - epoch - 1)
                reporter.batch(epoch + 1, step, steps, {**logs, "lr": lr}, rate, eta)
                if interrupt.raised and step < steps:
                    state.batches_done = step
                    state.partial_seconds = seconds_before + time.perf_counter() - started
                    values = [v.numpy() for m in model.metrics for v in m.variables]
                    if chief:
                        save_checkpoint(checkpoint_path, model, state, values)
                    raise TrainingInterrupted(out, epoch + 1, step)

            train_logs = {m.name: float(m.result()) for m in model.metrics}
            for metric in model.metrics:
                metric.reset_state()
            for batch in test_ds:
                test_step(batch)
            val_logs = {m.name: float(m.result()) for m in model.metrics}
            seconds = seconds_before + time.perf_counter() - started
            row = {
                "epoch": epoch + 1,
                "loss": train_logs["loss"],
                "accuracy": train_logs["accuracy"],
                "val_loss": val_logs["loss"],
                "val_accuracy": val_logs["accuracy"],
                "lr": lr,
                "seconds": seconds,
            }
            if not _finite(row["val_loss"]):
                raise TrainingDiverged(_diverged_message(out, row["val_loss"], epoch + 1, steps, state.epochs_done, "validation "))
            scheduler.on_epoch_end(epoch, {"val_loss": row["val_loss"]})
            state = TrainingState(
                epochs_done=epoch + 1,
                history=state.history + [row],
                scheduler={"best": scheduler.best, "wait": scheduler.wait, "cooldown_counter": scheduler.cooldown_counter},
            )
            if chief:
                save_checkpoint(checkpoint_path, model, state)
                write_metrics(out / "metrics.csv", state.history)
                _write_tensorboard(train_writer, val_writer, row)
            epoch_times.append(seconds)
            reporter.epoch_end(row, _mean_epoch(epoch_times, seconds) * (config.epochs - epoch - 1))
            if interrupt.raised and epoch + 1 < config.epochs:
                raise TrainingInterrupted(out, epoch + 2, 0)

    train_writer.close()
    val_writer.close()
    return _finish(out, config, model, state, write=chief)


def _mean_epoch(epoch_times, fallback):
    return sum(epoch_times) / len(epoch_times) if epoch_times else fallback


def _diverged_message(out, value, epoch, step, epochs_done, which=""):
    kept = (
        f"the checkpoint of epoch {epochs_done} in {out} is kept"
        if epochs_done
        else "no epoch had finished, so there is no checkpoint to keep"
    )
    return (
        f"the {which}loss became {value} at epoch {epoch}, batch {step}; training stopped and {kept}. "
        "Start a new run with a lower --lr, or check the input data."
    )


def _write_tensorboard(train_writer, val_writer, row):
    """Epoch scalars in TensorBoard's format. ``tf.summary.write`` with the
    scalars plugin's metadata is what ``tf.summary.scalar`` writes, without
    needing the tensorboard package installed."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    step = row["epoch"]
    values = (
        (train_writer, "epoch_loss", "loss"),
        (train_writer, "epoch_accuracy", "accuracy"),
        (train_writer, "learning_rate", "lr"),
        (val_writer, "epoch_loss", "val_loss"),
        (val_writer, "epoch_accuracy", "val_accuracy"),
    )
    for writer, tag, key in values:
        with writer.as_default():
            tf.summary.write(tag, tf.constant(row[key], tf.float32), step=step, metadata=metadata.SerializeToString())
    train_writer.flush()
    val_writer.flush()


def weights_fingerprint(model):
    """SHA-256 of the model's weights: equal on every worker of a run."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _finish(out, config, model, state, write=True):
    """The summary; with ``write`` (the chief) also model.keras,
    summary.json and learning_curves.png."""
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
