"""The user's workflow as typed: `tess train --dataset digits`, then `tess export
--target cortex-m4`, `tess build`, `tess simulate` with no paths, in one folder."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tess_keras.cli import picking
from tess_keras.cli.main import app
from tess_keras.export import outdir

runner = CliRunner()


def plain(text):
    return " ".join(text.split())


def tess(*args, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "tess_keras.cli.main", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "TF_CPP_MIN_LOG_LEVEL": "2"})


def finished_run(path, age):
    """A run directory with model.keras and summary.json dated ``age`` seconds ago."""
    path.mkdir(parents=True)
    for name in ("model.keras", "summary.json"):
        (path / name).write_text("{}")
        stamp = time.time() - age
        os.utime(path / name, (stamp, stamp))
    return path


def test_the_most_recent_finished_run_is_picked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finished_run(tmp_path / "runs" / "digits-tess-1", age=300)
    finished_run(tmp_path / "runs" / "digits-tess-2", age=100)
    finished_run(tmp_path / "runs" / "digits-bptt-0", age=200)
    (tmp_path / "runs" / "digits-tess-3").mkdir()  # still training: no model.keras yet
    assert [p.name for p in picking.finished_runs()] == ["digits-tess-2", "digits-bptt-0", "digits-tess-1"]
    # tess export without RUN_DIR says what it picked (this one is no real model, so it stops after).
    result = runner.invoke(app, ["export", "--target", "cortex-m4"])
    text = plain(result.output)
    assert text.startswith("using run runs/digits-tess-2 error:") and result.exit_code == 2
    assert "runs/digits-tess-2/model.keras" in text  # the load error names the picked run's model
    assert not (tmp_path / "runs" / "digits-tess-2" / "export-cortex-m4").exists()


@pytest.mark.parametrize("layout", ["no-runs", "unfinished", "empty"])
def test_nothing_to_export_is_explained(layout, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if layout != "no-runs":
        (tmp_path / "runs").mkdir()
    if layout == "unfinished":
        (tmp_path / "runs" / "digits-tess-1").mkdir()
    result = runner.invoke(app, ["export", "--target", "cortex-m4"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = plain(result.output)
    assert text.startswith("error: no trained run to export") and "tess train --dataset digits" in text
    assert {"no-runs": "there is no runs/ folder", "unfinished": "none finished", "empty": "runs/ is empty"}[layout] \
        in text


@pytest.mark.parametrize("command", ["build", "simulate", "flash"])
def test_the_most_recent_export_is_picked(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [command])
    assert result.exit_code == 2
    text = plain(result.output)
    assert text.startswith(f"error: no export to {command}") and "tess export --target cortex-m4" in text
    for name, age in (("a", 50), ("b", 10), ("c", 30)):
        export = tmp_path / "runs" / name / "export-cortex-m4"
        export.mkdir(parents=True)
        (export / "report.json").write_text(json.dumps({"board": "mps2-an386"}))
        outdir.write_manifest(export, target="cortex-m4", board="mps2-an386")
        stamp = time.time() - age
        os.utime(export / outdir.MANIFEST, (stamp, stamp))
    (tmp_path / "runs" / "d" / "export-cortex-m4").mkdir(parents=True)  # no manifest: not an export
    assert [str(p) for p in picking.exports()][0] == os.path.join("runs", "b", "export-cortex-m4")
    result = runner.invoke(app, [command])
    text = plain(result.output)
    # Picked and printed; these fake exports hold no engine, so the command stops there.
    assert "using export runs/b/export-cortex-m4" in text
    assert result.exit_code == 2 and "not a `tess export` output" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs the Arm toolchain and QEMU")
def test_train_export_build_simulate_with_no_paths(tmp_path):
    trained = tess("train", "--dataset", "digits", "--epochs", "1", "--limit-train", "300", "--limit-test", "100",
                   cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = picking.finished_runs(tmp_path / "runs")
    assert run.name.startswith("digits-tess-")

    exported = tess("export", "--target", "cortex-m4", "--demo-learn", "32", "--demo-test", "40", "--demo-epochs",
                    "1", "--evaluate", "100", "--representative", "30", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"using run runs/{run.name}" in plain(exported.stderr)
    export = run / "export-cortex-m4"
    manifest = json.loads((export / outdir.MANIFEST).read_text())
    assert manifest["board"] == "mps2-an386" and manifest["target"] == "cortex-m4"

    built = tess("build", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"using export runs/{run.name}/export-cortex-m4" in plain(built.stderr)
    assert (export / "build" / "mps2-an386" / "tess_firmware.elf").is_file()

    simulated = tess("simulate", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr[-3000:]
    summary = json.loads((export / "simulate.json").read_text())
    assert summary["board"] == "mps2-an386" and summary["bit_exact_with_host"] is True
    report = json.loads((export / "report.json").read_text())
    assert summary["result"]["accuracy_before"] == pytest.approx(report["demo"]["golden_accuracy_before"], abs=1e-3)
    assert summary["result"]["accuracy_after"] == pytest.approx(report["demo"]["golden_accuracy_after"], abs=1e-3)
    # A second export of the same run replaces the first (build/ and simulate.json go with it).
    again = tess("export", "--target", "cortex-m4", "--learn", "readout", "--demo-learn", "32", "--demo-test", "40",
                 "--demo-epochs", "1", "--evaluate", "100", "--representative", "30", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((export / "report.json").read_text())["learn"] == ["readout"]
    assert not (export / "build").exists() and not (export / "simulate.json").exists()
