"""Nothing lost, no traceback: one writer per run directory, damaged
checkpoints, a full disk, a loss that runs away, SIGTERM, a data folder
that is a file.

Concurrency and signals run ``tess train`` in subprocesses; the rest runs
the CLI in this process (one TensorFlow start for all of them).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tess_keras import training
from tess_keras.cli.main import app
from tess_keras.training import guard
from tess_keras.training.lock import LOCK, RunLock

ENV = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = ["--dataset", "digits", "--batch-size", "16", "--limit-train", "64", "--limit-test", "32", "--seed", "3"]
runner = CliRunner()


def tess(*args):
    return [sys.executable, "-m", "tess_keras.cli.main", *args]


def text_of(output):
    return " ".join(output.split())


def invoke(*args):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result, text_of(result.output)


def leftovers(run_dir):
    """Temporaries of an interrupted write (there must be none)."""
    return sorted(p.name for p in Path(run_dir).iterdir() if p.name.endswith((".tmp", ".tmp.keras", ".old")))


def tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


# -- the lock (in this process) ------------------------------------------------------------


def test_second_lock_is_refused_and_a_released_lock_can_be_taken(tmp_path):
    run_dir = tmp_path / "run"
    first = RunLock(run_dir).acquire()
    assert f"pid {os.getpid()}" in (run_dir / LOCK).read_text()
    with pytest.raises(training.ConfigError, match=rf"being written by another training run \(pid {os.getpid()}"):
        RunLock(run_dir).acquire()
    first.release()
    assert not run_dir.exists()  # it created the directory and nothing else was written
    with RunLock(run_dir):
        (run_dir / "config.json").write_text("{}")
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]  # lock file gone, the run's file kept


def test_stale_lock_file_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK).write_text("pid 999999 on elsewhere\n")  # its process is gone: no flock holds it
    with RunLock(run_dir):
        assert f"pid {os.getpid()}" in (run_dir / LOCK).read_text()
    assert not (run_dir / LOCK).exists()


def test_loss_guard_limits():
    assert guard.loss_limit(10) == pytest.approx(1000 * 2.302585, rel=1e-6)
    guard.check_loss(2000.0, 10, "r", 1, 1, 0)  # below the limit: fine
    for value, words in [(float("nan"), "became nan"), (float("inf"), "became inf"), (1e11, "running away")]:
        with pytest.raises(training.TrainingDiverged, match=words):
            guard.check_loss(value, 10, "r", 1, 1, 0)


def test_write_failures_are_recognised():
    import errno

    import tensorflow as tf

    assert guard.write_failure(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert guard.write_failure(OSError(errno.EROFS, "Read-only file system")) == "Read-only file system"
    disk_full = tf.errors.ResourceExhaustedError(None, None, "r/checkpoint.tmp/x.tempstate1; No space left on device")
    assert guard.write_failure(disk_full) == "No space left on device"
    assert guard.write_failure(ValueError("shapes differ")) is None


# -- two trainings, one directory (subprocesses) ------------------------------------------


@pytest.mark.slow
def test_two_trainings_into_one_directory(tmp_path):
    """While one run trains into R, `--out R` and `--resume R` both refuse;
    the first run's files stay its own."""
    run_dir = tmp_path / "shared"
    first = subprocess.Popen(  # long enough to outlive the others' start-up; stopped by Ctrl-C below
        tess("train", *TINY, "--epochs", "50", "--limit-train", "192", "--out", str(run_dir)),
        stderr=subprocess.PIPE, text=True, env=ENV,
    )
    seen = []
    try:
        for line in first.stderr:
            seen.append(line)
            if line.startswith("training "):
                break
        assert (run_dir / LOCK).is_file(), "".join(seen)
        others = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
            for command in (tess("train", *TINY, "--epochs", "1", "--seed", "9", "--out", str(run_dir)),
                            tess("train", "--resume", str(run_dir)))
        ]
        outputs = [other.communicate(timeout=600)[0] for other in others]
        assert first.poll() is None, "the first training ended before the others tried"
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=600)[1]
    finally:
        for process in [first] + locals().get("others", []):
            if process.poll() is None:
                process.kill()
                process.communicate()
    for other, output in zip(others, outputs):
        output = text_of(output)
        assert other.returncode == 2, output
        assert f"{run_dir} is being written by another training run (pid {first.pid}" in output
        assert "Traceback" not in output
    assert first.returncode == 130, "".join(seen) + rest
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["seed"], config["epochs"]) == (3, 50)  # the first run's, untouched by the others
    state = training.read_state(run_dir / training.CHECKPOINT)["state"]
    metrics = run_dir / "metrics.csv"
    assert (len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0) == state["epochs_done"]
    assert not (run_dir / LOCK).exists()


@pytest.mark.slow
def test_killed_training_leaves_a_lock_the_next_run_takes_over(tmp_path):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen(tess("train", *TINY, "--epochs", "3", "--out", str(run_dir)), stderr=subprocess.PIPE,
                               text=True, env=ENV)
    for line in process.stderr:
        if line.startswith("epoch 1/3"):
            process.kill()
            break
    process.communicate(timeout=120)
    assert (run_dir / LOCK).is_file()  # stale: its process is gone
    result, output = invoke("train", "--resume", str(run_dir))
    assert result.exit_code == 0, output
    assert not (run_dir / LOCK).exists()
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 3


# -- SIGTERM checkpoints like Ctrl-C (subprocess) ------------------------------------------


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_batch(tmp_path):
    run_dir = tmp_path / "terminated"
    args = [*TINY, "--epochs", "3", "--limit-train", "192"]
    process = subprocess.Popen(tess("train", *args, "--out", str(run_dir)), stderr=subprocess.PIPE, text=True, env=ENV)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("epoch 1/3"):
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            break
    rest = process.communicate(timeout=300)[1]
    log = text_of("".join(seen) + rest)
    assert process.returncode == 128 + signal.SIGTERM, log
    assert "Traceback" not in log
    assert f"Continue with: tess train --resume {run_dir}" in log
    state = training.read_state(run_dir / training.CHECKPOINT)["state"]
    assert state["epochs_done"] == 1 and state["batches_done"] >= 1  # stopped inside epoch 2
    result, output = invoke("train", "--resume", str(run_dir))
    assert result.exit_code == 0, output
    assert f"batch {state['batches_done']}" in output
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 3


# -- in this process: damaged checkpoints, a full disk, a runaway loss ----------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    result, output = invoke("train", *TINY, "--epochs", "1", "--out", str(run_dir))
    assert result.exit_code == 0, output
    return run_dir


def _damage(path, how):
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00not a checkpoint\xff" * 10)
    elif how == "missing":
        path.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(
    "member, how",
    [
        ("state.json", "truncated"), ("state.json", "empty"), ("state.json", "garbage"),
        ("variables.index", "truncated"), ("variables.index", "missing"),
        ("variables.data-00000-of-00001", "truncated"), ("variables.data-00000-of-00001", "empty"),
    ],
)
def test_damaged_checkpoint_on_resume(finished, tmp_path, member, how):
    run_dir = tmp_path / "damaged"
    shutil.copytree(finished, run_dir)
    _damage(run_dir / training.CHECKPOINT / member, how)
    before = tree(run_dir)
    result, output = invoke("train", "--resume", str(run_dir), "--epochs", "2")
    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "checkpoint" in output and str(run_dir) in output
    assert tree(run_dir) == before  # nothing changed, nothing added


def _mount_tmpfs(path, size):
    """A small tmpfs at ``path`` (root only); False when mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or os.environ.get("TESS_TEST_NO_TMPFS"):
        return False  # TESS_TEST_NO_TMPFS=1 checks the patched-writer fallback as root
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """``make(size)`` -> a folder on a disk of ``size``, or None where no tmpfs can be mounted."""
    mounted = []

    def make(size):
        path = tmp_path / f"disk{len(mounted)}"
        if not _mount_tmpfs(path, size):
            return None
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)  # lazy: files TensorFlow still holds open


def _full_after(monkeypatch, writes_allowed):
    """Where no tmpfs can be mounted: ``tf.train.Checkpoint.write`` fails as
    on a full disk after ``writes_allowed`` successful writes."""
    import tensorflow as tf

    original, calls = tf.train.Checkpoint.write, []

    def write(self, prefix, *args, **kwargs):
        calls.append(prefix)
        if len(calls) > writes_allowed:
            Path(prefix).parent.mkdir(parents=True, exist_ok=True)
            Path(str(prefix) + ".data-00000-of-00001").write_bytes(b"partial")
            raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}.tempstate1; No space left on device")
        return original(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", write)


@pytest.mark.slow
def test_disk_full_while_writing_a_checkpoint(finished, small_disk, monkeypatch, tmp_path):
    checkpoint_bytes = sum(p.stat().st_size for p in (finished / training.CHECKPOINT).iterdir())
    # Room for the first checkpoint, not for a second beside it.
    disk = small_disk(f"{(checkpoint_bytes * 3 // 2) // 1024}k")
    if disk is None:
        _full_after(monkeypatch, 1)
        disk = tmp_path
    run_dir = disk / "run"
    result, output = invoke("train", *TINY, "--epochs", "3", "--out", str(run_dir))
    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"cannot write to the run directory {run_dir}: No space left on device" in output
    assert "the checkpoint of epoch 1 is intact" in output
    assert leftovers(run_dir) == []
    state = training.read_state(run_dir / training.CHECKPOINT)["state"]
    assert state["epochs_done"] == 1


@pytest.mark.slow
def test_disk_full_while_writing_the_model(finished, small_disk, tmp_path):
    checkpoint_bytes = sum(p.stat().st_size for p in (finished / training.CHECKPOINT).iterdir())
    model_bytes = (finished / "model.keras").stat().st_size
    # Room for one checkpoint and the small files, not for model.keras.
    disk = small_disk(f"{(checkpoint_bytes + model_bytes // 2) // 1024}k")
    if disk is None:
        pytest.skip("needs a small tmpfs (root); the checkpoint case covers the patched writer")
    run_dir = disk / "run"
    result, output = invoke("train", *TINY, "--epochs", "1", "--out", str(run_dir))
    assert result.exit_code == 2, output
    assert f"cannot write to the run directory {run_dir}: No space left on device" in output
    assert "the checkpoint of epoch 1 is intact" in output
    assert leftovers(run_dir) == [] and not (run_dir / "model.keras").exists()
    assert training.read_state(run_dir / training.CHECKPOINT)["state"]["epochs_done"] == 1


@pytest.mark.slow
def test_exploding_loss_stops_the_run(tmp_path):
    run_dir = tmp_path / "exploding"
    started = time.monotonic()
    result, output = invoke("train", *TINY, "--epochs", "3", "--lr", "1e9", "--out", str(run_dir))
    assert result.exit_code == 2, output
    assert "the loss became" in output and ("running away" in output or "became nan" in output), output
    assert "Start a new run with a lower --lr" in output
    assert "epoch 1/3" not in output  # stopped within the first epoch
    assert time.monotonic() - started < 300


@pytest.mark.slow
def test_data_dir_that_is_a_file(tmp_path):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("x")
    result = subprocess.run(tess("train", "--dataset", "cifar10", "--epochs", "1", "--out", str(tmp_path / "run")),
                            capture_output=True, text=True, env={**ENV, "TESS_DATA_DIR": str(not_a_folder)},
                            timeout=600)
    output = text_of(result.stdout + result.stderr)
    assert result.returncode == 2, output
    assert str(not_a_folder) in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()
