"""The training loop: epochs of seeded batches, evaluation, the learning-rate
schedule, checkpoints after every epoch and on Ctrl-C, exact resume."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from tess_keras.training.checkpoint import (
    CHECKPOINT,
    TrainingState,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from tess_keras.training.config import ConfigError
from tess_keras.training.errors import TrainingDiverged, TrainingInterrupted, diverged_message
from tess_keras.training.interrupt import InterruptFlag
from tess_keras.training.report import Reporter, finish
from tess_keras.training.rundir import TensorBoardLog, prepare_run_dir, save_config, write_metrics


def make_rule(name, alpha_post):
    """The learning rule ``name`` (``alpha_post`` for TESS and S-TLLR)."""
    from tess_keras import rules

    if name in ("tess", "stllr"):
        return rules.get(name, alpha_post=alpha_post)
    return rules.get(name)


def epoch_seed(seed, epoch):
    """Seed of epoch ``epoch``'s data order and augmentation."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


def limit_splits(splits, config):
    """``splits`` cut to ``config.limit_train`` / ``limit_test`` samples."""
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


def _finite(value):
    return math.isfinite(float(value))


def _mean_epoch(epoch_times, fallback):
    return sum(epoch_times) / len(epoch_times) if epoch_times else fallback


def train(config, reporter=None, resume=False):
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
        tess_keras.data.DatasetError: the dataset is missing.
        TrainingInterrupted: SIGINT; a checkpoint was written first.
        TrainingDiverged: the loss became NaN/inf; the last checkpoint is kept.
    """
    import keras

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
    out = prepare_run_dir(config.out, resume, holds_run=(CHECKPOINT,)) if chief else Path(config.out)
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
        save_config(out, config)

    with strategy.scope(), distribute.precision_policy(config.precision):
        rule = make_rule(config.rule, config.alpha_post)
        if config.model == "imported":  # a `tess import` run: the network is its model.keras
            if not (out / "model.keras").is_file():
                raise ConfigError(f"{out} has no model.keras: model 'imported' is for run directories written "
                                  "by `tess import`; fine-tune one with `tess train --resume RUN_DIR`.")
            model = keras.saving.load_model(out / "model.keras")
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
    test_ds = distribute.distribute_dataset(strategy, data.make_tf_dataset(splits, "test", config.batch_size))
    steps = math.ceil(len(splits.y_train) / config.batch_size)
    log = TensorBoardLog(out if chief else None)
    reporter.start(config, steps, state)
    epoch_times = [row["seconds"] for row in state.history]

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
            samples = 0
            logs = {}
            for step, batch in enumerate(dataset, start=start_batch + 1):
                logs = {k: float(v) for k, v in train_step(batch).items()}
                samples += int(logs.pop("samples"))
                if not _finite(logs["loss"]):
                    raise TrainingDiverged(diverged_message(out, logs["loss"], epoch + 1, step, state.epochs_done))
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
                raise TrainingDiverged(diverged_message(out, row["val_loss"], epoch + 1, steps, state.epochs_done, "validation "))
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
            epoch_times.append(seconds)
            reporter.epoch_end(row, _mean_epoch(epoch_times, seconds) * (config.epochs - epoch - 1))
            if interrupt.raised and epoch + 1 < config.epochs:
                raise TrainingInterrupted(out, epoch + 2, 0)

    log.close()
    return finish(out, config, model, state, write=chief)
