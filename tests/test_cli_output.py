"""Quiet, readable output: help pages, ``tess datasets`` at 80 columns, epoch
lines that never break, an ETA that does not jump, no progress bar left
behind, and no TensorFlow or converter chatter unless ``--verbose``."""

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tess_keras.cli.main import app

runner = CliRunner()
COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)
QUIET_ENV = {k: v for k, v in os.environ.items() if k not in ("TESS_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}


def tess(*args, env=None, timeout=600):
    """Run the ``tess`` entry point in a subprocess with its output piped."""
    command = [sys.executable, "-c", "from tess_keras.cli.main import run; run()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**QUIET_ENV, "COLUMNS": "80", **(env or {})})


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_pages_use_typer_s_usual_metavars_and_fit_80_columns(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"<(str|int|float|bool|path)[^>]*>", text), text
    assert not re.search(r"\{[a-z_]+\}", text), text  # e.g. {run_dir} in the usage line
    assert max(len(line) for line in text.splitlines()) <= 80, text
    if command == ["eval"]:
        assert "Usage: tess eval [OPTIONS] RUN_DIR" in text and "PATH" in text and "INTEGER" in text
    if command == []:
        assert "--verbose" in text


def test_datasets_listing_is_readable_at_80_columns_in_a_pipe(tmp_path):
    result = tess("datasets", "--data-dir", str(tmp_path))
    listing = tess("datasets", "--data-dir", str(tmp_path), "--json")
    assert result.returncode == 0 and listing.returncode == 0, result.stderr + listing.stderr
    lines = result.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, result.stdout
    for entry in json.loads(listing.stdout):
        assert f"{entry['name']}  T=" in result.stdout
        # The value column is 70 wide: a path that fits is on one line, whole.
        if len(entry["path"]) <= 70:
            assert any(entry["path"] in line for line in lines), (entry["path"], result.stdout)
    # No column of the old five-column table cut words into pieces.
    assert "expected layout / source" not in result.stdout


def fake_row(epoch, val=True):
    return {"epoch": epoch, "loss": 2.3662, "accuracy": 0.0469, "val_loss": 2.3538 if val else None,
            "val_accuracy": 0.0312 if val else None, "lr": 0.001, "seconds": 10.9}


@pytest.mark.parametrize("terminal", [True, False])
def test_epoch_lines_are_one_line_on_an_80_column_terminal_and_in_a_pipe(monkeypatch, terminal):
    from rich.console import Console

    from tess_keras.cli import train

    screen = io.StringIO()
    monkeypatch.setattr(train, "console", Console(file=screen, width=80, force_terminal=terminal))
    reporter = train.RichReporter()
    reporter.epochs, reporter.rate = 200, 1234.0
    reporter.epoch_end(fake_row(120), 4321.0)
    reporter.epoch_end(fake_row(121, val=False), 4300.0)
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("epoch 120/200  loss 2.3662  acc 0.0469") and lines[0].endswith("ETA 1:12:01"), lines
    assert lines[1].startswith("epoch 121/200  loss 2.3662  acc 0.0469") and lines[1].endswith("ETA 1:11:40"), lines
    if terminal:  # what does not fit is left out, whole fields only
        assert all(len(line) <= 80 for line in lines), lines
        assert "val_acc 0.0312" in lines[0] and "no validation" in lines[1]
    else:  # a pipe keeps every field
        assert "1234 samples/s" in lines[0] and "lr 0.001" in lines[0] and "10.9 s" in lines[0]


def test_fit_fields_drops_whole_fields_by_rank():
    from tess_keras.cli.train import fit_fields

    fields = [("epoch 1/2", 0), ("speed", 1), ("lr 0.1", 2), ("ETA 0:00:01", 0)]
    assert fit_fields(fields, None) == "epoch 1/2  speed  lr 0.1  ETA 0:00:01"
    assert fit_fields(fields, 31) == "epoch 1/2  lr 0.1  ETA 0:00:01"
    assert fit_fields(fields, 10) == "epoch 1/2  ETA 0:00:01"


def test_the_progress_bar_is_removed_when_training_ends_by_an_unexpected_ctrl_c(monkeypatch, tmp_path):
    from tess_keras import training
    from tess_keras.cli import train

    reporters = []

    class Recording(train.RichReporter):
        def __init__(self):
            super().__init__()
            reporters.append(self)

    def interrupted(config, reporter=None, resume=False):
        reporter.progress.start()
        reporter.batch(1, 1, 4, {"loss": 1.0, "accuracy": 0.5, "lr": 1e-3}, 10.0, 3.0)
        raise KeyboardInterrupt  # e.g. a second Ctrl-C while the checkpoint is written

    monkeypatch.setattr(train, "RichReporter", Recording)
    monkeypatch.setattr(training, "train", interrupted)
    runner.invoke(app, ["train", "--dataset", "digits", "--out", str(tmp_path / "run")])
    assert reporters and not reporters[0].progress.live.is_started


def simulate(clock_cls, epochs=4, steps=5, first_batch=6.0, batch=1.0, first_end=5.0, end=2.0):
    """Drive an EtaClock with a fake clock; returns (time, predicted finish,
    where) for every estimate, and the true finish time."""
    now = [0.0]
    clock = clock_cls(epochs, steps, validation_batches=3, clock=lambda: now[0])
    predictions = []
    for epoch in range(epochs):
        clock.epoch_started()
        for step in range(1, steps + 1):
            now[0] += first_batch if (epoch, step) == (0, 1) else batch
            predictions.append((now[0], now[0] + clock.after_batch(epoch, step), f"epoch {epoch} batch {step}"))
        now[0] += first_end if epoch == 0 else end
        predictions.append((now[0], now[0] + clock.after_epoch(epoch), f"epoch {epoch} end"))
    return predictions, now[0]


def test_eta_counts_down_without_jumping_at_epoch_ends():
    from tess_keras.training.eta import EtaClock

    predictions, finish = simulate(EtaClock)
    # From the second batch on, batches are typical; the first epoch's end
    # (which traces the validation step) is replaced by typical ones from
    # the second epoch's end: from there the predicted finish is exact.
    steady = [p for t, p, where in predictions if t >= predictions[11][0]]
    assert steady and all(abs(p - finish) < 1e-9 for p in steady), predictions
    # Before that the predicted finish moves by seconds, at an epoch's end
    # or elsewhere (it used to move by 20 s here, more than a whole epoch).
    moves = [abs(b[1] - a[1]) for a, b in zip(predictions[1:], predictions[2:])]
    assert max(moves) <= 4.0, predictions
    assert predictions[-1][1] == finish  # ETA 0 at the end


def test_native_output_is_hidden_unless_verbose_and_replayed_on_failure():
    code = textwrap.dedent(
        """
        import os, sys
        from tess_keras.logs import native_output_quieted
        with native_output_quieted():
            os.write(2, b"fully_quantize: 0, inference_type: 6\\n")
            os.write(1, b"native stdout\\n")
        print("after", flush=True)
        if len(sys.argv) > 1:
            with native_output_quieted():
                os.write(2, b"the converter's own error\\n")
                raise RuntimeError("conversion failed")
        """
    )
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=QUIET_ENV, timeout=60)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "after\n", "")
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**QUIET_ENV, "TESS_VERBOSE": "1"}, timeout=60)
    assert "fully_quantize: 0" in loud.stderr and "native stdout" in loud.stdout
    failed = subprocess.run([sys.executable, "-c", code, "fail"], capture_output=True, text=True, env=QUIET_ENV,
                            timeout=60)
    assert failed.returncode == 1
    assert "the converter's own error" in failed.stderr and "conversion failed" in failed.stderr


CONVERT = textwrap.dedent(
    """
    import numpy as np
    from tess_keras import logs
    logs.configure(None)
    import tensorflow as tf
    from tess_keras.export import tflm

    class Graph:  # the smallest graph the exporter's int8 conversion accepts
        input_shape, state_shapes, model = (4,), [], tf.Module()

        def state_names(self):
            return []

        def __call__(self, x):
            return tf.nn.relu(x * 2.0)

    model = tflm.convert(Graph(), [[np.full((1, 4), 0.5, np.float32)]] * 4)
    print("converted", len(model))
    """
)


def test_the_tflite_converter_is_quiet_unless_verbose():
    quiet = subprocess.run([sys.executable, "-c", CONVERT], capture_output=True, text=True, env=QUIET_ENV, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "converted" in quiet.stdout
    for chatter in ("fully_quantize", "absl::InitializeLog", "cpu_feature_guard", "oneDNN"):
        assert chatter not in quiet.stderr, quiet.stderr
    loud = subprocess.run([sys.executable, "-c", CONVERT], capture_output=True, text=True,
                          env={**QUIET_ENV, "TESS_VERBOSE": "1"}, timeout=300)
    assert loud.returncode == 0 and "fully_quantize" in loud.stderr, loud.stderr


def test_verbose_is_a_global_option(monkeypatch):
    monkeypatch.setenv("TESS_VERBOSE", "0")  # restored afterwards, as is the log level
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    result = runner.invoke(app, ["--verbose", "datasets", "--help"])
    assert result.exit_code == 0 and os.environ.get("TESS_VERBOSE") == "1"
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"  # TensorFlow's whole log, in this process and its children
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    result = runner.invoke(app, ["datasets", "--help"])  # TESS_VERBOSE=1 alone asks for the same
    assert result.exit_code == 0 and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.setenv("TESS_VERBOSE", "0")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    result = runner.invoke(app, ["datasets", "--help"])
    assert result.exit_code == 0 and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


@pytest.mark.slow
def test_a_training_run_in_a_pipe_prints_whole_epoch_lines_and_no_tensorflow_chatter(tmp_path):
    result = tess("train", "--dataset", "digits", "--epochs", "2", "--limit-train", "64", "--limit-test", "32",
                  "--batch-size", "16", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    epoch_lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2, output
    assert all("val_acc" in line and "samples/s" in line and "ETA" in line for line in epoch_lines), epoch_lines
    for chatter in ("absl", "oneDNN", "cpu_feature_guard", "WARNING"):
        assert chatter not in output, output


IMPORT_FAKE_TENSORFLOW = textwrap.dedent(
    """
    import sys
    from tess_keras import logs
    logs.configure(None)
    try:
        import tensorflow
    except RuntimeError:
        sys.exit(3)
    print("imported", tensorflow.__loader__.__class__.__name__)
    """
)


@pytest.mark.parametrize("fails", [False, True])
def test_tensorflow_s_native_chatter_at_import_is_hidden_unless_verbose(tmp_path, fails):
    # On CPUs with AVX512-VNNI or AMX, TensorFlow's libraries write "oneDNN custom operations are on" straight to
    # file descriptor 2 while TensorFlow is imported, before TF_CPP_MIN_LOG_LEVEL is read. A stand-in package
    # does the same, so this holds on every machine.
    package = tmp_path / "tensorflow"
    package.mkdir()
    failure = "raise RuntimeError('broken install')\n" if fails else ""
    (package / "__init__.py").write_text("import os\nos.write(2, b'oneDNN custom operations are on\\n')\n" + failure)
    env = {**QUIET_ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    quiet = subprocess.run([sys.executable, "-c", IMPORT_FAKE_TENSORFLOW], capture_output=True, text=True, env=env,
                           timeout=60)
    loud = subprocess.run([sys.executable, "-c", IMPORT_FAKE_TENSORFLOW], capture_output=True, text=True,
                          env={**env, "TESS_VERBOSE": "1"}, timeout=60)
    assert "oneDNN" in loud.stderr
    if fails:  # what the import printed is shown with its error
        assert quiet.returncode == 3 and "oneDNN" in quiet.stderr, quiet.stderr
    else:
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "imported SourceFileLoader\n", "")
