"""One board table: export, build, simulate and flash read the same boards, and the
board an export was made for is the board `tess build` builds."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tess_keras.cli.main import app
from tess_keras.export import boards, exporter, outdir
from tess_keras.export import build as firmware_build
from tess_keras.export import flash as firmware_flash
from tess_keras.export.spec import ExportError

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
runner = CliRunner()


def plain(text):
    return " ".join(text.split())


def test_every_board_is_complete_in_the_firmware():
    table = json.loads((FIRMWARE / "boards" / "boards.json").read_text())
    cmake = (FIRMWARE / "CMakeLists.txt").read_text()
    assert list(boards.all_boards()) == list(table)
    for name, spec in table.items():
        board = boards.get_board(name)
        script = (FIRMWARE / "boards" / name / "memory.ld").read_text()
        sizes = {}
        for region in ("FLASH", "RAM"):  # parsed here independently of the module
            match = re.search(rf"^\s*{region}\s*\([^)]*\)\s*:.*LENGTH\s*=\s*(\d+)\s*([KM]?)", script, re.M)
            sizes[region] = int(match.group(1)) * {"": 1, "K": 1024, "M": 1024 * 1024}[match.group(2)]
        assert (board.flash_bytes, board.ram_bytes) == (sizes["FLASH"], sizes["RAM"]), name
        assert f'TESS_BOARD_PLATFORM STREQUAL "{spec["platform"]}"' in cmake, name
        assert spec["cpu_flags"][0] == f"-mcpu={spec['target']}", name
        assert spec["clock_hz"] > 0
        # Every board runs somewhere: in QEMU or through a probe.
        assert bool(spec.get("qemu_machine")) != bool(spec.get("pyocd_target")), name
    # No firmware board is missing from the table.
    with_scripts = {p.parent.name for p in (FIRMWARE / "boards").glob("*/memory.ld")}
    assert with_scripts == set(table)
    assert boards.get_board("nucleo-f446re").ram_bytes == 128 * 1024
    # The last 32 KB of the nRF52840's 1 MB (and the STM32F446's sector 7) keep the learned state, not code.
    assert boards.get_board("nrf52840-dk").flash_bytes == 1024 * 1024 - 32 * 1024
    assert boards.get_board("nucleo-f446re").flash_bytes == 512 * 1024 - 128 * 1024


def test_export_build_simulate_and_flash_know_the_same_boards(tmp_path):
    names = list(boards.all_boards())
    for name in names:  # export accepts each board for its own core, build accepts it too
        assert exporter.resolve_board(boards.get_board(name).target, name).name == name
        assert firmware_build.resolve_board(tmp_path, name) == name
    assert list(firmware_build.load_boards()) == names
    assert firmware_flash.real_boards() == boards.real_boards() == ["nucleo-f446re", "nrf52840-dk"]
    assert boards.qemu_boards() == ["mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"]
    # Each core's default board is a QEMU board of that core.
    for target, name in boards.default_boards().items():
        if target != "host":
            assert boards.get_board(name).target == target and boards.get_board(name).qemu_machine
    assert boards.targets() == ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "host")
    # The help of every command lists the table's boards.
    expected = {"export": names, "build": names, "simulate": boards.qemu_boards(), "flash": boards.real_boards()}
    for command, listed in expected.items():
        text = plain(runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output)
        for name in listed:
            assert name in text, (command, name)


def test_a_board_without_firmware_is_refused_by_export():
    # stm32f746g-disco used to be an export preset without firmware: export said it fit,
    # build silently built another board. Now every command refuses it alike.
    with pytest.raises(ExportError, match="unknown --board 'stm32f746g-disco'"):
        exporter.resolve_board("cortex-m7", "stm32f746g-disco")
    with pytest.raises(firmware_build.FirmwareError, match="unknown board 'stm32f746g-disco'"):
        firmware_build.resolve_board(Path("."), "stm32f746g-disco")


def export_record(directory, **fields):
    directory.mkdir(parents=True, exist_ok=True)
    for name in firmware_build.ENGINE_FILES:
        (directory / name).write_text("// engine\n")
    outdir.write_manifest(directory, **fields)
    return directory


def test_build_takes_the_board_the_export_recorded(tmp_path):
    assert firmware_build.resolve_board(export_record(tmp_path / "a", target="cortex-m4", board="nrf52840-dk")) == \
        "nrf52840-dk"
    assert firmware_build.resolve_board(export_record(tmp_path / "h", target="host", board=None)) == "host"
    # An explicit --board still wins.
    assert firmware_build.resolve_board(tmp_path / "a", "mps2-an386") == "mps2-an386"
    # Never a silent substitute: an unknown recorded board and a missing record are errors.
    with pytest.raises(firmware_build.FirmwareError, match="exported for board 'stm32f746g-disco'"):
        firmware_build.resolve_board(export_record(tmp_path / "s", target="cortex-m7", board="stm32f746g-disco"))
    (tmp_path / "none").mkdir()
    with pytest.raises(firmware_build.FirmwareError, match="does not record the board"):
        firmware_build.resolve_board(tmp_path / "none")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs the Arm toolchain")
def test_tess_build_without_board_builds_the_exported_one(tmp_path):
    """The stand-in engine exported for the nRF52840-DK: `tess build OUT_DIR` builds
    that board (not the core's QEMU board), and `tess flash` would program it."""
    standin = firmware_build.FIRMWARE_DIR / "standin"
    out = tmp_path / "export-cortex-m4"
    out.mkdir()
    for name in ("tess_engine.h", "tess_engine.cc"):
        shutil.copy(standin / name, out / name)
    subprocess.run([sys.executable, str(standin / "make_demo_data.py"), str(out)], check=True)
    (out / "report.json").write_text(json.dumps({"target": "cortex-m4", "board": "nrf52840-dk"}))
    outdir.write_manifest(out, target="cortex-m4", board="nrf52840-dk")
    result = subprocess.run([sys.executable, "-m", "tess_keras.cli.main", "build", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "nrf52840-dk: flash" in result.stderr
    assert (out / "build" / "nrf52840-dk" / "tess_firmware.elf").is_file()
    assert not (out / "build" / "mps2-an386").exists()


def test_simulate_and_flash_say_which_board_to_name(tmp_path):
    from tess_keras.export import simulate as firmware_simulate

    host = export_record(tmp_path / "host", target="host", board=None)
    with pytest.raises(firmware_build.FirmwareError, match=r"exported for the host.*--board \(one of mps2-an386"):
        firmware_simulate.simulate(host)
    with pytest.raises(firmware_build.FirmwareError, match="board 'host' does not run in QEMU"):
        firmware_simulate.simulate(host, "host")
    qemu = export_record(tmp_path / "qemu", target="cortex-m4", board="mps2-an386")
    with pytest.raises(firmware_build.FirmwareError, match=r"not a real board; flash one of nucleo-f446re, "
                                                           r"nrf52840-dk \(--board NAME\)"):
        firmware_flash.flash(qemu)
