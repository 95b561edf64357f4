"""Train a spiking model on a dataset, with exact checkpoint/resume.

A run directory holds:

    config.json           the run's ``TrainConfig`` (T resolved)
    checkpoint/           weights and optimizer state (Adam moments,
                          iteration, learning rate) keyed by name, plus
                          ReduceLROnPlateau state, the epoch history and the
                          data position; replaced atomically at the end of
                          every epoch and on interruption (``checkpoint``)
    metrics.csv           one row per finished epoch: training loss and
                          accuracy, the validation split's (val_*), lr, time
    logs/                 TensorBoard event files (train/ and validation/)
    summary.json          the configuration, the kept model's validation
                          figures, the test split's (evaluated once, at the
                          end), which epoch was kept and why, class counts
    model.keras           the trained model
    learning_curves.png   loss and accuracy per epoch

The order of the training samples in epoch ``e`` and its augmentation are
seeded from ``(seed, e)``, so an epoch can be replayed exactly: resuming from
a checkpoint taken after ``b`` batches of epoch ``e`` rebuilds that epoch's
data, skips ``b`` batches and continues with the saved weights, optimizer,
scheduler and running metrics. An uninterrupted run and an
interrupted-then-resumed run with the same seed compute the same numbers.

Modules: ``config`` (``TrainConfig``, TOML, validation, resume checks),
``rundir`` (the run directory, atomic writes, metrics.csv, TensorBoard,
learning curves), ``checkpoint`` (save/restore), ``loop`` (``train``),
``report`` (``Reporter``, the summary), ``errors`` and ``interrupt``.
"""

from tess_keras.training.checkpoint import (
    CHECKPOINT,
    CHECKPOINT_VERSION,
    TrainingState,
    load_checkpoint,
    metric_names,
    named_variables,
    read_arrays,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
)
from tess_keras.training.config import (
    FIELDS,
    RESUMABLE_CHANGES,
    ConfigError,
    TrainConfig,
    check_compatible,
    read_config_file,
    resolve_config,
    validate,
)
from tess_keras.training.errors import TrainingDiverged, TrainingInterrupted
from tess_keras.training.loop import data_notes, epoch_dataset, epoch_seed, evaluate_split, make_rule, train
from tess_keras.training.report import Reporter, finish, weights_fingerprint
from tess_keras.training.rundir import (
    CONFIG,
    METRIC_COLUMNS,
    TensorBoardLog,
    atomic_write,
    load_saved_config,
    plot_learning_curves,
    prepare_run_dir,
    save_config,
    write_metrics,
)

__all__ = [
    "CHECKPOINT", "CHECKPOINT_VERSION", "CONFIG", "FIELDS", "METRIC_COLUMNS", "RESUMABLE_CHANGES",
    "ConfigError", "Reporter", "TensorBoardLog", "TrainConfig", "TrainingDiverged", "TrainingInterrupted",
    "TrainingState", "atomic_write", "check_compatible", "data_notes", "epoch_dataset", "epoch_seed", "evaluate_split", "finish",
    "load_checkpoint", "load_saved_config", "make_rule", "metric_names", "named_variables", "read_arrays",
    "read_state", "resolve_checkpoint", "plot_learning_curves", "prepare_run_dir",
    "read_config_file", "resolve_config", "save_checkpoint", "save_config", "train", "validate",
    "weights_fingerprint", "write_metrics",
]
