"""The training loop: epochs of seeded batches, evaluation on the validation
split, the learning-rate schedule, checkpoints after every epoch and on
Ctrl-C, exact resume, and one evaluation of the test split at the end.

Evaluation protocol: only the validation split is read during training; it
gives each epoch's ``val_loss`` / ``val_accuracy``, drives
ReduceLROnPlateau and the NaN stop. The kept model is the last epoch's; the
test split is evaluated once, on that model, after the last epoch. Without a
validation split (``validation_fraction`` 0) the learning rate stays fixed
and nothing is checked or selected by validation.
"""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from tess_keras.modelfile import ModelFileError, load_spiking_model
from tess_keras.training import guard
from tess_keras.training.checkpoint import (
    CHECKPOINT,
    TrainingState,
    load_checkpoint,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
)
from tess_keras.training.config import ConfigError
from tess_keras.training.errors import TrainingInterrupted
from tess_keras.training.eta import EtaClock
from tess_keras.training.guard import check_loss
from tess_keras.training.interrupt import InterruptFlag
from tess_keras.training.lock import RunLock
from tess_keras.training.report import Reporter, finish
from tess_keras.training.rundir import TensorBoardLog, prepare_run_dir, save_config, write_metrics


def make_rule(name, alpha_post, lsg_source="block"):
    """The learning rule ``name`` (``alpha_post`` and ``lsg_source`` for TESS and S-TLLR)."""
    from tess_keras import rules

    if name in ("tess", "stllr"):
        return rules.get(name, alpha_post=alpha_post, lsg_source=lsg_source)
    return rules.get(name)


def epoch_seed(seed, epoch):
    """Seed of epoch ``epoch``'s data order and augmentation."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


def epoch_dataset(splits, config, epoch):
    """Epoch ``epoch``'s training batches, shuffled and augmented with a seed
    drawn from ``(seed, epoch)``: the same epoch always yields the same
    batches, which is what makes resuming exact."""
    import tensorflow as tf

    from tess_keras import data

    seed = epoch_seed(config.seed, epoch)
    tf.random.set_seed(seed)
    return data.make_tf_dataset(splits, "train", config.batch_size, shuffle=True, seed=seed, augment=True)


def evaluate_split(model, step, dataset):
    """Mean loss and accuracy of ``model`` over ``dataset`` (no learning).

    Args:
        model: the model; its running metrics are reset first.
        step: ``distribute.make_test_step(model, ...)``.
        dataset: a distributed ``tf.data`` dataset of one split.

    Returns:
        ``{"loss": float, "accuracy": float}``.
    """
    for metric in model.metrics:
        metric.reset_state()
    for batch in dataset:
        step(batch)
    return {m.name: float(m.result()) for m in model.metrics}


def data_notes(splits, config):
    """Lines worth telling the user about the data before training.

    Args:
        splits: the loaded ``DatasetSplits``.
        config: the run's ``TrainConfig`` (fraction resolved).
    """
    notes = []
    if not len(splits.y_val):
        why = ("--validation-fraction 0" if not config.validation_fraction
               else f"the validation split of --validation-fraction {config.validation_fraction:g} is empty")
        notes.append(
            f"no validation split ({why}): the learning rate stays at {config.lr:g}, nothing is checked or selected "
            "by validation, and the kept model is the last epoch's"
        )
    if splits.incomplete:
        notes.append("incomplete dataset (--allow-incomplete): " + "; ".join(map(str, splits.incomplete)))
    if splits.skipped:
        notes.append("ignored while listing files: " + ", ".join(f"{k} {v}" for k, v in splits.skipped.items()))
    return notes


def train(config, reporter=None, resume=False):
    """Train as configured (or continue ``config.out`` when ``resume``),
    holding the run directory's lock (``lock.RunLock``) throughout.

    Args:
        config: a validated ``TrainConfig``.
        reporter: a ``Reporter`` for progress (optional).
        resume: continue from the checkpoint in ``config.out``.

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        ConfigError: as ``_train``; also another process is writing the run
            directory, or a write to it failed (disk full, read-only): the
            previous checkpoint is kept and no temporary files are left.
        tess_keras.data.DatasetError, TrainingInterrupted, TrainingDiverged: as ``_train``.
    """
    from tess_keras import distribute

    lock = RunLock(config.out) if distribute.chief_by_config(config.strategy) else None
    if lock is not None:
        lock.acquire()
    try:
        return _train(config, reporter, resume)
    except Exception as error:
        reason = guard.write_failure(error) if lock is not None and _in_run_dir(error, config.out) else None
        if reason is None:
            raise
        guard.remove_temporaries(config.out)
        found = resolve_checkpoint(Path(config.out) / CHECKPOINT)
        epochs_done = read_state(found)["state"]["epochs_done"] if found is not None else None
        raise ConfigError(guard.write_failure_message(config.out, reason, epochs_done)) from None
    finally:
        if lock is not None:
            lock.release()


def _in_run_dir(error, out):
    """Whether ``error`` (an ``OSError`` or a TensorFlow ``OpError``) is about a file in the run directory."""
    import tensorflow as tf

    if isinstance(error, OSError):
        return error.filename is None or str(Path(out).resolve()) in str(Path(str(error.filename)).resolve())
    return isinstance(error, tf.errors.OpError) and str(out) in str(error)


def _train(config, reporter, resume):
    """Train as configured (or continue ``config.out`` when ``resume``).

    Args:
        config: a validated ``TrainConfig`` (see ``resolve_config`` and
            ``check_compatible``).
        reporter: a ``Reporter`` for progress (optional).
        resume: continue from the checkpoint in ``config.out``.

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        ConfigError: the run directory or checkpoint is unusable.
        tess_keras.data.DatasetError: the dataset is missing, incomplete
            or corrupt.
        TrainingInterrupted: SIGINT; a checkpoint was written first.
        TrainingDiverged: the loss became NaN/inf; the last checkpoint is kept.
    """
    import keras

    from tess_keras import data, distribute, models

    # Only the chief writes; other workers train the same weights silently.
    chief = distribute.chief_by_config(config.strategy)
    reporter = reporter or Reporter()
    out = prepare_run_dir(config.out, resume, holds_run=(CHECKPOINT,)) if chief else Path(config.out)
    keras.utils.set_random_seed(config.seed)
    if config.validation_fraction is None:  # the dataset's default, saved with the run
        config = dataclasses.replace(config, validation_fraction=data.INFO[config.dataset].validation_fraction)
    # A missing dataset raises DatasetError; the lock's release then removes a run directory it created.
    splits = data.load_dataset(
        config.dataset,
        config.data_dir or None,
        config.time_steps or None,
        config.seed,
        validation_fraction=config.validation_fraction,
        allow_incomplete=config.allow_incomplete,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
    )
    if resume and config.time_steps and splits.time_steps != config.time_steps:
        raise ConfigError(f"the dataset gave T={splits.time_steps} but the run uses T={config.time_steps}.")
    config = dataclasses.replace(config, time_steps=splits.time_steps)
    has_validation = len(splits.y_val) > 0
    # The dataset first, then the cluster: a worker whose data is missing stops at once instead of
    # leaving the others waiting. multi-worker starts this worker's collective-ops server here.
    try:
        strategy = distribute.make_strategy(config.strategy, cluster_timeout=config.cluster_timeout)
    except distribute.DistributeError as error:
        raise ConfigError(str(error)) from None
    if chief and not resume:
        save_config(out, config)

    with strategy.scope(), distribute.precision_policy(config.precision):
        rule = make_rule(config.rule, config.alpha_post, config.lsg_source)
        if config.model == "imported":  # a `tess import` run: the network is its model.keras
            if not (out / "model.keras").is_file():
                raise ConfigError(f"{out} has no model.keras: model 'imported' is for run directories written "
                                  "by `tess import`; fine-tune one with `tess train --resume RUN_DIR`.")
            try:
                model = load_spiking_model(out / "model.keras", "Import the NIR file again with `tess import`.")
            except ModelFileError as error:
                raise ConfigError(str(error)) from None
            model.rule = rule
        else:
            model = models.build_model(config.model, splits.input_shape, splits.num_classes, rule)
        model.compile(optimizer=keras.optimizers.Adam(config.lr))  # a LossScaleOptimizer under mixed_float16
        model.optimizer.build(model.trainable_variables)
    scheduler = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)
    scheduler.set_model(model)
    scheduler.on_train_begin()

    state, metric_values = TrainingState(), []
    checkpoint_path = out / CHECKPOINT
    # A run killed before its first checkpoint resumes from the beginning.
    if resume and resolve_checkpoint(checkpoint_path) is not None:
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
    if has_validation:
        validation_ds = distribute.distribute_dataset(
            strategy, data.make_tf_dataset(splits, "validation", config.batch_size)
        )
    steps = math.ceil(len(splits.y_train) / config.batch_size)
    log = TensorBoardLog(out if chief else None)
    reporter.data({name: len(splits.subset(name)[1]) for name in data.SUBSETS}, data_notes(splits, config))
    reporter.start(config, steps, state)
    clock = EtaClock(config.epochs, steps, math.ceil(len(splits.y_val) / config.batch_size) if has_validation else 0)

    with InterruptFlag() as interrupt:
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
            clock.epoch_started()
            samples = 0
            logs = {}
            for step, batch in enumerate(dataset, start=start_batch + 1):
                logs = {k: float(v) for k, v in train_step(batch).items()}
                samples += int(logs.pop("samples"))
                check_loss(logs["loss"], splits.num_classes, out, epoch + 1, step, state.epochs_done)
                elapsed = time.perf_counter() - started
                rate = samples / elapsed if elapsed > 0 else 0.0
                reporter.batch(epoch + 1, step, steps, {**logs, "lr": lr}, rate, clock.after_batch(epoch, step))
                if interrupt.raised and step < steps:
                    state.batches_done = step
                    state.partial_seconds = seconds_before + time.perf_counter() - started
                    values = [v.numpy() for m in model.metrics for v in m.variables]
                    if chief:
                        save_checkpoint(checkpoint_path, model, state, values)
                    raise TrainingInterrupted(out, epoch + 1, step, interrupt.signum)

            train_logs = {m.name: float(m.result()) for m in model.metrics}
            val_logs = evaluate_split(model, test_step, validation_ds) if has_validation else {}
            seconds = seconds_before + time.perf_counter() - started
            row = {
                "epoch": epoch + 1,
                "loss": train_logs["loss"],
                "accuracy": train_logs["accuracy"],
                "val_loss": val_logs.get("loss"),
                "val_accuracy": val_logs.get("accuracy"),
                "lr": lr,
                "seconds": seconds,
            }
            if has_validation:
                check_loss(row["val_loss"], splits.num_classes, out, epoch + 1, steps, state.epochs_done, "validation ")
                scheduler.on_epoch_end(epoch, {"val_loss": row["val_loss"]})
            state = TrainingState(
                epochs_done=epoch + 1,
                history=state.history + [row],
                scheduler={"best": scheduler.best, "wait": scheduler.wait, "cooldown_counter": scheduler.cooldown_counter},
            )
            if chief:
                save_checkpoint(checkpoint_path, model, state)
                write_metrics(out / "metrics.csv", state.history)
                log.write(row)
            reporter.epoch_end(row, clock.after_epoch(epoch))
            if interrupt.raised and epoch + 1 < config.epochs:
                raise TrainingInterrupted(out, epoch + 2, 0, interrupt.signum)

    log.close()
    # The test split, once, on the model the run keeps (the last epoch's).
    test_logs = None
    if len(splits.y_test):
        test_ds = distribute.distribute_dataset(strategy, data.make_tf_dataset(splits, "test", config.batch_size))
        test_logs = evaluate_split(model, test_step, test_ds)
    return finish(out, config, model, state, splits, test_logs, write=chief)
