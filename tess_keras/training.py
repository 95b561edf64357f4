"""Train a spiking model on a dataset and write the run directory.

RUN_DIR/metrics.csv   one row per epoch
RUN_DIR/summary.json  final figures and the configuration
RUN_DIR/model.keras   the trained model
"""

import csv
import dataclasses
import json
import os
import time
from pathlib import Path

import keras

from tess_keras import data, models, rules

METRIC_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run."""

    dataset: str = "digits"
    rule: str = "tess"
    model: str = "mcu"
    epochs: int = 20
    batch_size: int = 32
    time_steps: int = 0  # 0: the dataset's default
    lr: float = 1e-3
    alpha_post: float = 1.0
    seed: int = 0
    data_dir: str = ""
    out: str = "runs/latest"


def make_rule(name, alpha_post):
    if name in ("tess", "stllr"):
        return rules.get(name, alpha_post=alpha_post)
    return rules.get(name)


class MetricsCSV(keras.callbacks.Callback):
    """Append one row per epoch to metrics.csv (flushed every epoch)."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_train_begin(self, logs=None):
        with self.path.open("w", newline="") as handle:
            csv.writer(handle).writerow(METRIC_COLUMNS)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = [epoch + 1] + [f"{float(logs.get(k, float('nan'))):.6f}" for k in METRIC_COLUMNS[1:5]]
        row += [f"{lr:.6g}", f"{time.perf_counter() - self._start:.3f}"]
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow(row)


def train(config: TrainConfig, extra_callbacks=(), verbose=0):
    """Run training as configured; returns the summary dict."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    splits = data.load_dataset(config.dataset, config.data_dir or None, config.time_steps or None, config.seed)
    train_ds = data.make_tf_dataset(splits, "train", config.batch_size, shuffle=True, seed=config.seed)
    test_ds = data.make_tf_dataset(splits, "test", config.batch_size)

    model = models.build_model(config.model, splits.input_shape, splits.num_classes, make_rule(config.rule, config.alpha_post))
    model.compile(optimizer=keras.optimizers.Adam(config.lr))
    callbacks = [
        MetricsCSV(out / "metrics.csv"),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5),
        *extra_callbacks,
    ]
    start = time.perf_counter()
    model.fit(train_ds, validation_data=test_ds, epochs=config.epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)

    model_path = out / "model.keras"
    tmp_path = out / "model.tmp.keras"
    model.save(tmp_path)
    os.replace(tmp_path, model_path)
    summary = {
        **dataclasses.asdict(config),
        "time_steps": splits.time_steps,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "parameters": int(model.count_params()),
        "train_seconds": round(seconds, 3),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
