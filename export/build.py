"""Compile an OUT_DIR written by ``tess export`` into firmware (``tess build``).

The firmware project lives in the repository's ``firmware/`` directory; OUT_DIR
supplies the generated engine (tess_engine.h/.cc, model_data, demo_data).
CMake builds each board into ``OUT_DIR/build/<board>/``:

    cmake -S firmware -B OUT_DIR/build/mps2-an386 -DTESS_ENGINE_DIR=OUT_DIR -DTESS_BOARD=mps2-an386
    cmake --build OUT_DIR/build/mps2-an386

Board ``host`` builds the same demo application with the machine's C++
compiler: its result line is the bit-exact reference for the firmware.
"""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

from tess_keras.export import boards as board_table
from tess_keras.export.boards import FIRMWARE_DIR
from tess_keras.export.outdir import read_manifest

HOST_BOARD = "host"
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
ENGINE_FILES = ("tess_engine.h", "tess_engine.cc", "demo_data.h", "demo_data.cc")


class FirmwareError(Exception):
    """A build, simulation or flash problem; the message says what to do."""


@dataclasses.dataclass
class BuildResult:
    """What ``build`` produced.

    Attributes:
        board: board name (a key of firmware/boards/boards.json, or "host").
        executable: the ELF (firmware) or program (host).
        build_dir: the CMake build directory.
        sizes: for firmware, ``text``/``data``/``bss`` bytes from arm-none-eabi-size
            plus ``flash_bytes`` (text + data), ``ram_bytes`` (data + bss,
            stack included) and the board's ``flash_limit``/``ram_limit``.
    """

    board: str
    executable: Path
    build_dir: Path
    sizes: dict


def _boards():
    try:
        return board_table.all_boards()
    except board_table.BoardTableError as error:
        raise FirmwareError(str(error)) from None


def load_boards():
    """The board table (``tess_keras.export.boards``, the one export also reads) as
    ``{name: boards.json entry}``."""
    return {name: board.spec for name, board in _boards().items()}


def board_memory(board):
    """Flash and RAM sizes in bytes from the board's linker script.

    Args:
        board: a key of the board table.

    Returns:
        ``{"flash_limit": int, "ram_limit": int}``.
    """
    preset = _boards()[board]
    return {"flash_limit": preset.flash_bytes, "ram_limit": preset.ram_bytes}


def check_engine_dir(out_dir):
    """Raises FirmwareError unless ``out_dir`` holds a ``tess export`` output."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FirmwareError(f"{out_dir} does not exist. Create it with `tess export RUN_DIR --out {out_dir}` first.")
    missing = [name for name in ENGINE_FILES if not (out_dir / name).is_file()]
    if missing:
        raise FirmwareError(
            f"{out_dir} is not a `tess export` output: {', '.join(missing)} missing. "
            f"Run `tess export RUN_DIR --target cortex-m4 --out {out_dir}` first."
        )


def exported_board(out_dir):
    """The board ``tess export`` wrote OUT_DIR for: its manifest's (or, for exports
    without one, report.json's) ``board``; "host" for a host export.

    Raises:
        FirmwareError: the export records no board, or one the board table lacks.
    """
    out_dir = Path(out_dir)
    record = read_manifest(out_dir)
    if record is None:
        try:
            record = json.loads((out_dir / "report.json").read_text())
        except (OSError, ValueError):
            record = None
    if not isinstance(record, dict) or "board" not in record:
        raise FirmwareError(
            f"{out_dir} does not record the board it was exported for. Pass --board, or export it again with "
            f"`tess export RUN_DIR --target cortex-m4 --out {out_dir}`."
        )
    if record["board"] is None:
        return HOST_BOARD
    boards = _boards()
    board = str(record["board"]).lower()
    if board not in boards:
        raise FirmwareError(
            f"{out_dir} was exported for board {board!r}, which the firmware does not support (boards: "
            f"{', '.join(boards)}). Export it again with --board set to one of them."
        )
    return board


def resolve_board(out_dir, board=None):
    """The board to build for: ``board`` if given, else the one ``tess export`` recorded.

    Args:
        out_dir: the export directory.
        board: a board name, or None.

    Returns:
        A key of the board table, or "host".
    """
    if board is None:
        return exported_board(out_dir)
    boards = _boards()
    board = board.lower()
    if board != HOST_BOARD and board not in boards:
        raise FirmwareError(f"unknown board {board!r}; choose one of: {', '.join([*boards, HOST_BOARD])}.")
    return board


def find_tools(board):
    """Checks the toolchain a board needs and returns {tool: path}.

    Raises:
        FirmwareError: naming the Debian packages that provide what is missing.
    """
    if board == HOST_BOARD:
        needed = {"cmake": "cmake", "c++": "g++", "cc": "gcc"}
    else:
        needed = {
            "cmake": "cmake",
            "arm-none-eabi-gcc": "gcc-arm-none-eabi",
            "arm-none-eabi-g++": "gcc-arm-none-eabi",
            "arm-none-eabi-objcopy": "binutils-arm-none-eabi",
            "arm-none-eabi-size": "binutils-arm-none-eabi",
        }
    found = {tool: shutil.which(tool) for tool in needed}
    generator = shutil.which("ninja") or shutil.which("make")
    missing = [tool for tool, path in found.items() if path is None]
    if missing or generator is None:
        packages = sorted({needed[tool] for tool in missing} | ({"ninja-build"} if generator is None else set()))
        if board != HOST_BOARD:
            packages = sorted(set(packages) | set(ARM_PACKAGES.split()))
        tools = ", ".join(missing + (["ninja or make"] if generator is None else []))
        raise FirmwareError(
            f"building for {board} needs {tools}, which is not on PATH. On Debian/Ubuntu install it with "
            f"`apt-get install {' '.join(packages)}` (cmake and ninja also come with `pip install cmake ninja`)."
        )
    if board != HOST_BOARD:
        libc = subprocess.run([found["arm-none-eabi-gcc"], "-print-file-name=libc.a"], capture_output=True, text=True)
        if not os.path.isabs(libc.stdout.strip()):
            raise FirmwareError(
                "arm-none-eabi-gcc is installed but has no C library. On Debian/Ubuntu install it with "
                f"`apt-get install {ARM_PACKAGES}`."
            )
    found["generator"] = "Ninja" if Path(generator).name == "ninja" else "Unix Makefiles"
    return found


def _run(command, what):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join(output[-30:])
        raise FirmwareError(f"{what} failed (exit code {result.returncode}):\n{tail}")
    return result.stdout


def firmware_sizes(elf, board):
    """Flash and RAM use of an ELF from arm-none-eabi-size, with the board's limits."""
    output = _run(["arm-none-eabi-size", "--format=berkeley", str(elf)], "arm-none-eabi-size")
    text, data, bss = (int(field) for field in output.strip().splitlines()[-1].split()[:3])
    sizes = {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_bytes": data + bss}
    sizes.update(board_memory(board))
    return sizes


def build(out_dir, board=None, build_root=None, sanitize=False, dense_reference=False):
    """Configures and compiles the firmware (or the host reference) for one board.

    Args:
        out_dir: directory written by ``tess export``.
        board: board name; None takes the one report.json records.
        build_root: where the CMake build directories go (default OUT_DIR/build).
        sanitize: host board only: build with AddressSanitizer and UBSan.
        dense_reference: also link the engine's dense reference forward (the
            demo then times it against the event-driven one); needs an engine
            whose tess_engine.h defines TESS_HAS_DENSE_REFERENCE.

    Returns:
        A BuildResult.

    Raises:
        FirmwareError: missing toolchain, not an export directory, or a failed
            compile/link (the message carries the compiler's last lines; a link
            that overflows the board's RAM or flash fails here).
    """
    out_dir = Path(out_dir).resolve()
    check_engine_dir(out_dir)
    board = resolve_board(out_dir, board)
    tools = find_tools(board)
    build_root = Path(build_root) if build_root else out_dir / "build"
    build_dir = build_root / (board + ("-sanitize" if sanitize else "") + ("-dense" if dense_reference else ""))
    configure = [
        tools["cmake"], "-S", str(FIRMWARE_DIR), "-B", str(build_dir), "-G", tools["generator"],
        f"-DTESS_BOARD={board}", f"-DTESS_ENGINE_DIR={out_dir}", "-DCMAKE_BUILD_TYPE=Release",
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
        f"-DTESS_SANITIZE={'ON' if sanitize else 'OFF'}",
        f"-DTESS_WITH_DENSE_REFERENCE={'ON' if dense_reference else 'OFF'}",
    ]
    if board == HOST_BOARD:
        configure.append(f"-DCMAKE_CXX_COMPILER={tools['c++']}")
    _run(configure, f"configuring the {board} firmware with CMake")
    _run([tools["cmake"], "--build", str(build_dir)], f"compiling the {board} firmware")
    if board == HOST_BOARD:
        return BuildResult(board, build_dir / "tess_firmware", build_dir, {})
    elf = build_dir / "tess_firmware.elf"
    return BuildResult(board, elf, build_dir, firmware_sizes(elf, board))
