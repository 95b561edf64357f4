"""The evaluation protocol of ``tess train``: the validation split drives the
run (learning-rate schedule, NaN stop, per-epoch figures), the test split is
read once, after the last epoch; ``--validation-fraction 0``; the fields of
summary.json and metrics.csv. Tiny in-process digits runs."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tess_keras import data, training
from tess_keras.cli.main import app

runner = CliRunner()
EPOCHS = 3
OPTIONS = {"epochs": EPOCHS, "batch_size": 16, "limit_train": 96, "limit_test": 40, "seed": 3}


class Counting:
    """Stands in for a split's sample array and logs every read of it."""

    def __init__(self, array, name, events):
        self.array, self.name, self.events = array, name, events

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)

    def __len__(self):
        return len(self.array)

    def __getitem__(self, key):
        self.events.append(("read", self.name))
        return self.array[key]

    def __array__(self, dtype=None, copy=None):
        self.events.append(("read", self.name))
        array = np.asarray(self.array)
        return array if dtype is None else array.astype(dtype)


class Recorder(training.Reporter):
    def __init__(self, events):
        self.events = events

    def epoch_end(self, row, eta_seconds):
        self.events.append(("epoch_end", row["epoch"]))


def counting_loader(events, calls):
    real = data.load_dataset

    def load(*args, **kwargs):
        calls.append(kwargs)
        splits = real(*args, **kwargs)
        splits.x_val = Counting(splits.x_val, "validation", events)
        splits.x_test = Counting(splits.x_test, "test", events)
        return splits

    return load


def scheduler_spy(logs):
    import keras

    real = keras.callbacks.ReduceLROnPlateau.on_epoch_end

    def on_epoch_end(self, epoch, epoch_logs=None):
        logs.append(dict(epoch_logs))
        return real(self, epoch, epoch_logs)

    return on_epoch_end


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """One run whose validation and test arrays log their reads."""
    import keras

    events, calls, scheduler_logs = [], [], []
    out = tmp_path_factory.mktemp("runs") / "counted"
    config = training.resolve_config({**OPTIONS, "out": str(out)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_dataset", counting_loader(events, calls))
        patch.setattr(keras.callbacks.ReduceLROnPlateau, "on_epoch_end", scheduler_spy(scheduler_logs))
        summary = training.train(config, reporter=Recorder(events))
    return {"out": out, "summary": summary, "events": events, "calls": calls, "scheduler": scheduler_logs}


@pytest.mark.slow
def test_the_test_split_is_read_only_after_the_last_epoch(counted):
    events = counted["events"]
    ends = [i for i, event in enumerate(events) if event[0] == "epoch_end"]
    assert [events[i][1] for i in ends] == list(range(1, EPOCHS + 1))
    test_reads = [i for i, event in enumerate(events) if event == ("read", "test")]
    assert test_reads and min(test_reads) > ends[-1]
    # Every epoch reads the validation split before it ends.
    starts = [-1] + ends[:-1]
    for start, end in zip(starts, ends):
        assert ("read", "validation") in events[start + 1:end]
    # The limits and the protocol options reach load_dataset (stratified there).
    (call,) = counted["calls"]
    assert (call["limit_train"], call["limit_test"], call["validation_fraction"], call["allow_incomplete"]) == (
        96, 40, data.INFO["digits"].validation_fraction, False)


@pytest.mark.slow
def test_validation_figures_come_from_the_validation_split(counted):
    """The scheduler sees val_loss only, the validation loss of each epoch;
    re-evaluating the kept model gives the last epoch's validation figures on
    the validation split and the summary's test figures on the test split."""
    import keras

    import tess_keras.models  # noqa: F401  (registers the saved classes)
    from tess_keras.cli.eval import evaluate

    out, summary = counted["out"], counted["summary"]
    rows = read_metrics(out)
    assert [set(logs) for logs in counted["scheduler"]] == [{"val_loss"}] * EPOCHS
    assert [logs["val_loss"] for logs in counted["scheduler"]] == pytest.approx(
        [float(row["val_loss"]) for row in rows], abs=1e-6)

    splits = data.load_dataset("digits", seed=3, limit_train=96, limit_test=40)
    model = keras.saving.load_model(out / "model.keras")
    validation = evaluate(model, data.make_tf_dataset(splits, "validation", 16))
    test = evaluate(model, data.make_tf_dataset(splits, "test", 16))
    assert float(rows[-1]["val_loss"]) == pytest.approx(validation["loss"], rel=1e-4)
    assert summary["validation_accuracy"] == pytest.approx(np.mean(validation["labels"] == validation["predictions"]))
    assert summary["test_loss"] == pytest.approx(test["loss"], rel=1e-4)
    assert summary["test_accuracy"] == pytest.approx(np.mean(test["labels"] == test["predictions"]))


@pytest.mark.slow
def test_summary_and_metrics_fields(counted):
    out, summary = counted["out"], counted["summary"]
    assert json.loads((out / "summary.json").read_text()) == summary
    rows = read_metrics(out)
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert summary["validation_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]), abs=1e-6)
    assert summary["selected_epoch"] == EPOCHS and "last epoch" in summary["selection"]
    assert "best_test_accuracy" not in summary
    counts = summary["class_counts"]
    assert set(counts) == {"train", "validation", "test"}
    assert [sum(counts[s]) for s in ("train", "validation", "test")] == [96, 40, 40]
    assert all(n > 0 for n in counts["train"])  # stratified: every class present
    assert summary["validation_fraction"] == data.INFO["digits"].validation_fraction
    assert (summary["skipped"], summary["empty"], summary["incomplete"], summary["allow_incomplete"]) == (
        {}, {"train": 0, "validation": 0, "test": 0}, [], False)
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_loss"] > 0
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_validation_and_test_are_disjoint():
    splits = data.load_dataset("digits", seed=3)

    def rows(x):
        return {np.asarray(row).tobytes() for row in x}

    train, validation, test = rows(splits.x_train), rows(splits.x_val), rows(splits.x_test)
    assert validation and test and not (validation & test) and not (train & validation) and not (train & test)
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 1797  # every digit once


@pytest.mark.slow
def test_fraction_zero_trains_without_validation(tmp_path, monkeypatch):
    import keras

    scheduler_logs = []
    monkeypatch.setattr(keras.callbacks.ReduceLROnPlateau, "on_epoch_end", scheduler_spy(scheduler_logs))
    out = tmp_path / "no-validation"
    args = ["train", "--epochs", "2", "--batch-size", "16", "--limit-train", "64", "--limit-test", "32",
            "--validation-fraction", "0", "--allow-incomplete", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no validation split" in text and "learning rate stays" in text
    assert scheduler_logs == []
    rows = read_metrics(out)
    assert [(row["val_loss"], row["val_accuracy"]) for row in rows] == [("", "")] * 2
    assert len({row["lr"] for row in rows}) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["validation_fraction"] == 0 and summary["validation_accuracy"] is None
    assert summary["class_counts"]["validation"] == [0] * 10 and sum(summary["class_counts"]["test"]) == 32
    assert summary["allow_incomplete"] is True and 0.0 <= summary["test_accuracy"] <= 1.0
    assert "no validation" in summary["selection"]


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_an_invalid_validation_fraction_is_a_clear_error(tmp_path, value):
    result = runner.invoke(app, ["train", "--validation-fraction", value, "--out", str(tmp_path / "x")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "--validation-fraction must be at least 0 and below 1" in text, text
    assert not (tmp_path / "x").exists()


def test_validation_fraction_in_a_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("validation-fraction = 0\nallow_incomplete = true\n")
    assert training.read_config_file(path) == {"validation_fraction": 0.0, "allow_incomplete": True}
    config = training.resolve_config({}, path)
    assert (config.validation_fraction, config.allow_incomplete) == (0.0, True)
    path.write_text('validation_fraction = "a tenth"\n')
    with pytest.raises(training.ConfigError, match="validation_fraction must be a number"):
        training.read_config_file(path)


def test_a_resumed_run_keeps_its_validation_split(tmp_path):
    import dataclasses

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = training.TrainConfig(out=str(run_dir), time_steps=4, validation_fraction=0.1)
    (run_dir / training.CONFIG).write_text(json.dumps(dataclasses.asdict(config)))
    for args, message in (
        (["--validation-fraction", "0.2"], "--validation-fraction 0.2 differs from the run being resumed "
                                           "(--validation-fraction 0.1)"),
        (["--allow-incomplete"], "--allow-incomplete on differs from the run being resumed (--allow-incomplete off)"),
    ):
        result = runner.invoke(app, ["train", "--resume", str(run_dir), *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert training.check_compatible(training.load_saved_config(run_dir), {"validation_fraction": 0.1}) == config
