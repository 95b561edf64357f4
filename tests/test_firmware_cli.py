"""`tess build / simulate / flash` errors and the firmware's own checks, on the
stand-in engine (firmware/standin: a real, tiny C engine with the generated
API), so they run in seconds without training a network."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tess_keras.export import build as firmware_build
from tess_keras.export import flash as firmware_flash
from tess_keras.export import simulate as firmware_simulate

STANDIN = firmware_build.FIRMWARE_DIR / "standin"


@pytest.fixture(scope="module")
def standin_out(tmp_path_factory):
    """An OUT_DIR holding the stand-in engine and its demo data."""
    out = tmp_path_factory.mktemp("standin_out")
    for name in ("tess_engine.h", "tess_engine.cc"):
        shutil.copy(STANDIN / name, out / name)
    subprocess.run([sys.executable, str(STANDIN / "make_demo_data.py"), str(out)], check=True)
    (out / "report.json").write_text(json.dumps({"target": "cortex-m4", "board": "mps2-an386"}))
    return out


def tess(*args, path=None):
    """Runs the tess CLI in a subprocess; `path` replaces PATH."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "tess_keras.cli.main", *map(str, args)], capture_output=True, text=True, env=env
    )


def one_paragraph(result):
    """The CLI's error paragraph, unwrapped; fails on a traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_missing_toolchain_names_the_debian_packages(standin_out, tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    for command in ("build", "simulate"):
        message = one_paragraph(tess(command, standin_out, path=empty_path))
        assert "arm-none-eabi-gcc" in message
        assert "apt-get install" in message
        for package in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib"):
            assert package in message


def test_missing_qemu_names_its_package(standin_out, tmp_path):
    # A PATH with the whole toolchain but no QEMU.
    only_tools = tmp_path / "bin"
    only_tools.mkdir()
    for tool in ("cmake", "ninja", "make", "arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-objcopy",
                 "arm-none-eabi-size", "arm-none-eabi-as", "arm-none-eabi-ld", "arm-none-eabi-ar"):
        if shutil.which(tool):
            (only_tools / tool).symlink_to(shutil.which(tool))
    message = one_paragraph(tess("simulate", standin_out, path=only_tools))
    assert "qemu-system-arm" in message and "apt-get install qemu-system-arm" in message


def test_flash_without_a_probe_gives_the_documented_error(standin_out):
    message = one_paragraph(tess("flash", standin_out, "--board", "nucleo-f446re"))
    assert " ".join(firmware_flash.NO_PROBE_MESSAGE.split()) in message


def test_board_and_directory_errors(standin_out, tmp_path):
    assert "unknown board 'nucleo-f999'" in one_paragraph(tess("build", standin_out, "--board", "nucleo-f999"))
    assert "does not run in QEMU" in one_paragraph(tess("simulate", standin_out, "--board", "nrf52840-dk"))
    assert "is not a real board" in one_paragraph(tess("flash", standin_out, "--board", "mps2-an386"))
    (tmp_path / "notes.txt").write_text("not an export")
    message = one_paragraph(tess("build", tmp_path))
    assert "not a `tess export` output" in message and "tess_engine.h" in message


def test_standin_learns_in_qemu_bit_exact_with_host(standin_out):
    summary = firmware_simulate.simulate(standin_out, "mps2-an386", timeout=120)
    result = summary["result"]
    assert summary["bit_exact_with_host"] is True
    assert result["accuracy_after"] - result["accuracy_before"] >= 0.10
    # -icount shift=0: the timed loop of known length reads back exactly.
    assert abs(result["calibration_measured"] - result["calibration_loop"]) <= 100
    assert json.loads((standin_out / "simulate.json").read_text())["result"] == result


def with_extra_code(source, destination, prologue, call):
    """A copy of the stand-in OUT_DIR whose engine also runs `call` in tess_reset."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("build", "simulate.json"))
    engine = destination / "tess_engine.cc"
    patched = engine.read_text().replace("void tess_reset(void) {", "void tess_reset(void) {\n" + call, 1)
    engine.write_text(prologue + patched)
    return destination


def test_a_link_that_overflows_ram_fails(standin_out, tmp_path):
    # 300 KB more RAM cannot fit the nRF52840's 256 KB.
    big = with_extra_code(standin_out, tmp_path / "big", "volatile unsigned char ballast[300 * 1024];\n",
                          "    ballast[0] = 1;\n")
    with pytest.raises(firmware_build.FirmwareError, match="overflowed|will not fit"):
        firmware_build.build(big, "nrf52840-dk")


def test_firmware_links_without_a_heap(standin_out, tmp_path):
    result = firmware_build.build(standin_out, "mps2-an386")
    symbols = subprocess.run(["arm-none-eabi-nm", str(result.executable)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in symbols.splitlines() if line.strip()}
    assert not names & {"malloc", "_malloc_r", "free", "_sbrk", "__cxa_allocate_exception"}
    # ...and a use of malloc is a link error, not a silent heap.
    heap = with_extra_code(standin_out, tmp_path / "heap", "#include <stdlib.h>\nvoid *volatile grabbed;\n",
                           "    grabbed = malloc(16);\n")
    with pytest.raises(firmware_build.FirmwareError, match="__wrap_malloc"):
        firmware_build.build(heap, "mps2-an386")


def test_dense_reference_links_into_the_same_firmware(standin_out):
    summary = firmware_simulate.simulate(
        standin_out, "mps2-an386", timeout=120, compare_with_host=False, dense_reference=True
    )
    result = summary["result"]
    # Both forwards give the same logits on every held-out sample; only their cost differs.
    assert result["dense_identical_samples"] == result["test_samples"]
    assert result["dense_forward_per_step"] > 0
    assert 0.0 < result["spike_rate"] < 1.0
