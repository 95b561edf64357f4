"""`tess export` never deletes what it did not write: the manifest, refusals, the
leftovers of killed exports, and SIGKILL/SIGTERM in the middle of an export."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tess_keras.cli.main import app
from tess_keras.export import exporter, outdir

runner = CliRunner()
FAST_EXPORT = ["--demo-learn", "32", "--demo-test", "40", "--demo-epochs", "1", "--evaluate", "60",
               "--representative", "20"]


def plain(text):
    return " ".join(text.split())


def fake_export(directory, **files):
    """A directory written the way an export writes it (files, then the manifest)."""
    directory.mkdir(parents=True)
    for name, text in (files or {"tess_engine.h": "// engine\n", "report.json": "{}\n"}).items():
        (directory / name).write_text(text)
    outdir.write_manifest(directory, target="cortex-m4", board="mps2-an386")
    return directory


def untrained_run(path):
    from tess_keras.models import mcu_net

    path.mkdir(parents=True)
    mcu_net((8, 8, 1), 10).save(path / "model.keras")
    (path / "summary.json").write_text(json.dumps({"dataset": "digits", "time_steps": 4, "seed": 0}))
    return path


def test_what_may_be_replaced(tmp_path):
    assert outdir.check_replaceable(tmp_path / "new") == "new"
    (tmp_path / "empty").mkdir()
    assert outdir.check_replaceable(tmp_path / "empty") == "empty"
    previous = fake_export(tmp_path / "prev")
    (previous / "simulate.json").write_text("{}")  # what tess build / simulate add
    (previous / "build" / "mps2-an386").mkdir(parents=True)
    (previous / "build" / "mps2-an386" / "CMakeCache.txt").write_text("")
    assert outdir.check_replaceable(previous) == "previous"


@pytest.mark.parametrize("case", ["build-only", "report-only", "extra-file", "edited", "foreign-build", "file"])
def test_everything_else_is_refused(case, tmp_path):
    target = tmp_path / "d"
    if case == "build-only":
        (target / "build").mkdir(parents=True)
        (target / "build" / "important.txt").write_text("x")
    elif case == "report-only":
        target.mkdir()
        (target / "report.json").write_text("{}")
    elif case == "extra-file":
        fake_export(target)
        (target / "notes.txt").write_text("mine")
    elif case == "edited":
        fake_export(target)
        (target / "tess_engine.h").write_text("// my changes\n")
    elif case == "foreign-build":
        fake_export(target)
        (target / "build").mkdir()
        (target / "build" / "important.txt").write_text("x")
    else:
        target.write_text("a file")
    with pytest.raises(outdir.OutDirError) as error:
        outdir.check_replaceable(target)
    expected = {"build-only": "build", "report-only": "report.json", "extra-file": "notes.txt",
                "edited": "tess_engine.h (changed since the export wrote it)", "foreign-build": "build",
                "file": "is a file"}[case]
    assert expected in str(error.value)


def test_cli_refuses_a_folder_it_did_not_write_and_keeps_it(tmp_path):
    """The issue's case: mkdir -p d/build; echo x > d/build/important.txt; tess export RUN --out d."""
    run = untrained_run(tmp_path / "run")
    target = tmp_path / "d"
    (target / "build").mkdir(parents=True)
    (target / "build" / "important.txt").write_text("x\n")
    result = runner.invoke(app, ["export", str(run), "--out", str(target)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = plain(result.output)
    assert text.startswith("error:") and "not a previous `tess export` output" in text and "build" in text
    assert (target / "build" / "important.txt").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "run"]  # no temporary left either


def test_swap_replaces_a_previous_export_in_one_step(tmp_path):
    target = fake_export(tmp_path / "out", **{"report.json": '{"v": 1}'})
    new = outdir.make_temporary(target)
    (new / "report.json").write_text('{"v": 2}')
    outdir.write_manifest(new, board="mps2-an386")
    outdir.swap_into_place(new, target)
    assert (target / "report.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # A file that appeared during the export stops the swap, and nothing is lost.
    (target / "notes.txt").write_text("mine")
    newer = outdir.make_temporary(target)
    outdir.write_manifest(newer)
    with pytest.raises(outdir.OutDirError, match="notes.txt"):
        outdir.swap_into_place(newer, target)
    assert (target / "notes.txt").read_text() == "mine" and (target / "report.json").read_text() == '{"v": 2}'


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_exports_are_removed_and_nothing_else(tmp_path):
    target = fake_export(tmp_path / "good")
    dead = dead_pid()
    killed_new = tmp_path / f".good.tess-new-{dead}-abc123_x"
    killed_old = tmp_path / f".good.tess-old-{dead}-zz9"
    running = tmp_path / f".good.tess-new-{os.getppid()}-k3y"  # a live process's export in progress
    legacy = tmp_path / ".good.a1b2c3d4"  # what exports before the manifest left
    legacy_user = tmp_path / ".good.q1w2e3r4"  # same kind of name, but holds a user's file
    unrelated = tmp_path / ".other.tess-new-1-abc"
    for folder in (killed_new, killed_old, running, legacy, legacy_user, unrelated):
        folder.mkdir()
    (killed_new / "tess_engine.h").write_text("partial")
    (legacy / "tess_engine.cc").write_text("partial")
    (legacy_user / "thesis.tex").write_text("mine")
    removed = outdir.clean_leftovers(target)
    assert sorted(removed) == sorted([killed_new.name, killed_old.name, legacy.name])
    assert running.is_dir() and legacy_user.is_dir() and unrelated.is_dir() and target.is_dir()
    # The next export does it first.
    killed_new.mkdir()
    exporter.check_out_dir(target)
    assert not killed_new.exists()


def test_an_interrupted_swap_is_undone(tmp_path):
    """Without an atomic exchange the old export is renamed aside first; if the process
    died right then, the next export puts it back instead of deleting it."""
    aside = fake_export(tmp_path / f".out.tess-old-{dead_pid()}-abc")
    outdir.clean_leftovers(tmp_path / "out")
    assert (tmp_path / "out" / outdir.MANIFEST).is_file() and not aside.exists()


KILLABLE_EXPORT = (
    "import os, sys, time\n"
    "from tess_keras.export import outdir\n"
    "write = outdir.write_manifest\n"
    "def paused(directory, **fields):  # every file is in the temporary folder: the riskiest moment\n"
    "    result = write(directory, **fields)\n"
    "    print('READY', flush=True)\n"
    "    time.sleep(120)\n"
    "    return result\n"
    "outdir.write_manifest = paused\n"
    "from tess_keras.cli.main import run\n"
    "sys.argv = ['tess'] + sys.argv[1:]\n"
    "run()\n"
)


def files_of(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def previous_export(tmp_path_factory):
    """An untrained run and a finished export of it (copied into each test's folder)."""
    root = tmp_path_factory.mktemp("previous")
    run = untrained_run(root / "run")
    first = subprocess.run([sys.executable, "-m", "tess_keras.cli.main", "export", str(run), "--out", str(root / "out"),
                            *FAST_EXPORT], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    return root


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_export_leaves_the_previous_one_intact(how, previous_export, tmp_path):
    run, target = tmp_path / "run", tmp_path / "out"
    shutil.copytree(previous_export / "run", run)
    shutil.copytree(previous_export / "out", target)
    before = files_of(target)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_EXPORT, "export", str(run), "--out", str(target), "--learn", "readout",
         *FAST_EXPORT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while process.stdout.readline().strip() != "READY":
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
    temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tess-new-")]
    assert len(temporaries) == 1 and (temporaries[0] / outdir.MANIFEST).is_file()  # the new export, complete
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    assert files_of(target) == before  # the previous export, byte for byte
    assert outdir.check_replaceable(target) == "previous"
    if how == signal.SIGTERM:  # like Ctrl-C: it cleans up itself and says so
        assert process.returncode == 130 and "Traceback" not in stderr
        assert "left as it was" in plain(stderr)
        assert not temporaries[0].exists()
    else:
        assert process.returncode == -signal.SIGKILL and temporaries[0].exists()
        exporter.check_out_dir(target)  # what the next export does first
        assert not temporaries[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]


def package_export(directory):
    """A fake export with folders, as the CMake package has them (runtime/, cmake/)."""
    files = {"tess_engine.h": "// engine\n", "CMakeLists.txt": "project(tess_engine)\n",
             "runtime/tess_runtime.h": "// runtime\n", "runtime/tess_dense.cc": "// kernel\n",
             "cmake/tess_engineConfig.cmake": "# config\n"}
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return outdir.write_manifest(directory, target="cortex-m4", board="mps2-an386")


def test_folders_an_export_wrote_are_listed_and_replaceable(tmp_path):
    manifest = package_export(tmp_path / "out")
    assert manifest["files"]["runtime"] == {"tess_dense.cc": outdir.sha256(tmp_path / "out/runtime/tess_dense.cc"),
                                            "tess_runtime.h": outdir.sha256(tmp_path / "out/runtime/tess_runtime.h")}
    assert set(manifest["files"]["cmake"]) == {"tess_engineConfig.cmake"}
    (tmp_path / "out" / "build" / "host").mkdir(parents=True)  # cmake -S OUT_DIR -B OUT_DIR/build/host
    (tmp_path / "out" / "build" / "host" / "CMakeCache.txt").write_text("")
    assert outdir.check_replaceable(tmp_path / "out") == "previous"
    new = outdir.make_temporary(tmp_path / "out")
    package_export(new)
    outdir.swap_into_place(new, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("case", ["edited", "extra-file", "extra-folder", "folder-now-file", "file-now-folder"])
def test_changes_inside_an_exported_folder_are_refused(case, tmp_path):
    target = tmp_path / "out"
    package_export(target)
    if case == "edited":
        (target / "runtime" / "tess_dense.cc").write_text("// my fix\n")
    elif case == "extra-file":
        (target / "runtime" / "my_kernel.cc").write_text("// mine\n")
    elif case == "extra-folder":
        (target / "cmake" / "mine").mkdir()
    elif case == "folder-now-file":
        shutil.rmtree(target / "cmake")
        (target / "cmake").write_text("mine")
    else:
        (target / "CMakeLists.txt").unlink()
        (target / "CMakeLists.txt").mkdir()
    with pytest.raises(outdir.OutDirError) as error:
        outdir.check_replaceable(target)
    expected = {"edited": "runtime/tess_dense.cc (changed since the export wrote it)",
                "extra-file": "runtime/my_kernel.cc", "extra-folder": "cmake/mine",
                "folder-now-file": "cmake (changed since the export wrote it)",
                "file-now-folder": "CMakeLists.txt (changed since the export wrote it)"}[case]
    assert expected in str(error.value)
