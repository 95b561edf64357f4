"""``tess train`` / ``tess eval`` end to end on tiny digits runs.

One seeded reference run goes through a real ``tess`` subprocess. Two more
subprocesses are stopped in epoch 2, one by SIGKILL and one by SIGINT, then
resumed in-process; both must end with exactly the reference's metrics
(every epoch once, bit-identical figures as printed in metrics.csv).
"""

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from tess_keras import training
from tess_keras.cli.main import app

pytestmark = pytest.mark.slow

EPOCHS = 3
ARGS = ["--epochs", str(EPOCHS), "--batch-size", "16", "--limit-train", "192", "--limit-test", "64", "--seed", "5"]
ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
runner = CliRunner()


def tess(*args):
    return [sys.executable, "-m", "tess_keras.cli.main", *args]


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def checkpoint_state(run_dir):
    return training.read_state(run_dir / training.CHECKPOINT)["state"]


def snapshot(path):
    """Every file under ``path`` with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    result = subprocess.run(["tess", "train", *ARGS, "--out", str(run_dir)], capture_output=True, text=True,
                            env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr
    return run_dir, result.stderr


def start_and_stop_in_epoch_2(run_dir, sig):
    """Start training in a subprocess; send ``sig`` shortly after epoch 1 is
    reported, i.e. during epoch 2's 12 batches."""
    process = subprocess.Popen(tess("train", *ARGS, "--out", str(run_dir)), stderr=subprocess.PIPE, text=True, env=ENV)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(f"epoch 1/{EPOCHS}"):
            time.sleep(0.3)
            process.send_signal(sig)
            break
    rest = process.communicate(timeout=600)[1]
    return process.returncode, "".join(seen) + rest


def test_outputs_of_a_run(reference):
    run_dir, log = reference
    rows = read_metrics(run_dir)
    assert list(rows[0]) == list(training.METRIC_COLUMNS)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    assert all(0.0 <= float(row["val_accuracy"]) <= 1.0 and float(row["loss"]) > 0 for row in rows)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learns
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["validation_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]), abs=1e-6)
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["selected_epoch"] == EPOCHS
    assert (summary["rule"], summary["dataset"], summary["epochs"], summary["time_steps"], summary["model"]) == (
        "tess", "digits", EPOCHS, 4, "mcu")
    assert (run_dir / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "model.keras").stat().st_size > 0
    assert checkpoint_state(run_dir)["epochs_done"] == EPOCHS
    for line in ("epoch 1/3", "samples/s", "ETA", "Training summary", "validation accuracy", "test accuracy",
                 "evaluated once"):
        assert line in log
    assert not list(run_dir.glob("*.tmp"))

    import tensorflow as tf

    losses = []
    for path in (run_dir / "logs" / "validation").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "epoch_loss":
                    losses.append((event.step, float(tf.make_ndarray(value.tensor))))
    assert [step for step, _ in sorted(losses)] == list(range(1, EPOCHS + 1))
    assert sorted(losses)[-1][1] == pytest.approx(float(rows[-1]["val_loss"]), abs=1e-5)


def test_sigkill_then_resume_matches_the_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "killed"
    code, log = start_and_stop_in_epoch_2(run_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL, log
    done = checkpoint_state(run_dir)["epochs_done"]
    assert 1 <= done < EPOCHS and len(read_metrics(run_dir)) == done

    result = runner.invoke(app, ["train", "--resume", str(run_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"resuming {run_dir} at epoch {done + 1}" in result.output
    assert without_seconds(read_metrics(run_dir)) == without_seconds(read_metrics(reference[0]))
    ours = json.loads((run_dir / "summary.json").read_text())
    theirs = json.loads((reference[0] / "summary.json").read_text())
    assert ours["test_accuracy"] == theirs["test_accuracy"] and ours["test_loss"] == theirs["test_loss"]


def test_sigint_checkpoints_mid_epoch_and_resumes_exactly(reference, tmp_path):
    run_dir = tmp_path / "interrupted"
    code, log = start_and_stop_in_epoch_2(run_dir, signal.SIGINT)
    assert code == 130, log
    assert "Traceback" not in log
    assert f"Continue with: tess train --resume {run_dir}" in " ".join(log.split())
    state = checkpoint_state(run_dir)
    assert state["epochs_done"] == 1 and state["batches_done"] >= 1  # stopped inside epoch 2
    assert len(read_metrics(run_dir)) == 1

    # A resumed run keeps its configuration.
    bad = runner.invoke(app, ["train", "--resume", str(run_dir), "--seed", "6"])
    assert bad.exit_code == 2 and "--seed 6 differs" in bad.output

    result = runner.invoke(app, ["train", "--resume", str(run_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"batch {state['batches_done']}" in result.output
    assert without_seconds(read_metrics(run_dir)) == without_seconds(read_metrics(reference[0]))


def test_eval_of_a_run(reference):
    run_dir = reference[0]
    result = runner.invoke(app, ["eval", str(run_dir), "--limit-test", "64"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, repr(result.exception))
    report = json.loads((run_dir / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    # Same model, same 64 test samples: the accuracy the training loop reported.
    assert report["split"] == "test" and report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert report["loss"] == pytest.approx(summary["test_loss"], rel=1e-4)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 64
    assert np.trace(matrix) / 64 == pytest.approx(report["accuracy"])
    assert set(report["spike_rates"]) == {"conv1", "conv2", "conv3"}
    assert all(0.0 <= rate <= 1.0 for rate in report["spike_rates"].values())
    assert any(rate > 0.0 for rate in report["spike_rates"].values())
    assert (run_dir / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    for text in ("Per-class accuracy", "Confusion matrix", "Spike rate per layer", "conv1"):
        assert text in result.stdout

    # --split validation: the run's validation split again, the last epoch's val figures.
    result = runner.invoke(app, ["eval", str(run_dir), "--split", "validation", "--limit-test", "64"])
    assert result.exit_code == 0, (result.output, repr(result.exception))
    report = json.loads((run_dir / "eval.json").read_text())
    last = read_metrics(run_dir)[-1]
    assert report["split"] == "validation" and report["samples"] == 64
    assert report["accuracy"] == pytest.approx(float(last["val_accuracy"]), abs=1e-6)
    assert report["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-4)
    assert "64 validation samples" in result.stdout

    mismatch = runner.invoke(app, ["eval", str(run_dir), "--dataset", "digits-dvs"])
    assert mismatch.exit_code == 2 and "same shapes" in " ".join(mismatch.output.split())


def test_divergence_keeps_the_last_good_checkpoint(reference, tmp_path, monkeypatch):
    run_dir = tmp_path / "diverging"
    shutil.copytree(reference[0], run_dir)
    # Turn Adam's learning rate up to the float32 limit right after the
    # checkpoint is restored; the next epoch's updates overflow and the loss
    # becomes NaN.
    from tess_keras.training import loop

    def load_with_huge_lr(path, model):
        restored = training.load_checkpoint(path, model)
        model.optimizer.learning_rate.assign(3e38)
        return restored

    monkeypatch.setattr(loop, "load_checkpoint", load_with_huge_lr)
    before = snapshot(run_dir / training.CHECKPOINT), (run_dir / "metrics.csv").read_text()

    result = runner.invoke(app, ["train", "--resume", str(run_dir), "--epochs", str(EPOCHS + 2)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert "the loss became nan" in text and f"the checkpoint of epoch {EPOCHS}" in text
    assert "Traceback" not in result.output
    assert (snapshot(run_dir / training.CHECKPOINT), (run_dir / "metrics.csv").read_text()) == before


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    # A run killed before its first checkpoint holds only config.json.
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    config = training.TrainConfig(epochs=1, batch_size=16, time_steps=4, limit_train=32, limit_test=16, out=str(run_dir))
    (run_dir / training.CONFIG).write_text(json.dumps(dataclasses.asdict(config)))
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in read_metrics(run_dir)] == ["1"]
    assert (run_dir / "model.keras").exists()


def test_resume_cannot_shrink_epochs(reference):
    result = runner.invoke(app, ["train", "--resume", str(reference[0]), "--epochs", "2"])
    assert result.exit_code == 2
    assert f"--epochs 2 is less than the {EPOCHS} epochs this run has already trained" in " ".join(result.output.split())
