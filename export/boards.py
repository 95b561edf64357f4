"""The one board table that ``tess export``, ``build``, ``simulate`` and ``flash`` read.

Every board lives in ``firmware/boards/boards.json`` (CPU flags, platform,
QEMU machine or pyOCD target, clock); its flash and RAM sizes are read from
the board's linker script ``firmware/boards/<name>/memory.ld``, the very
numbers the link checks. So a board the exporter accepts is a board the
firmware can build, with the same memory, and there is no second list to
keep in step. ``TESS_FIRMWARE_DIR`` points at another copy of ``firmware/``.
"""

import dataclasses
import functools
import json
import os
import re
from pathlib import Path

FIRMWARE_DIR = Path(os.environ.get("TESS_FIRMWARE_DIR", Path(__file__).resolve().parent.parent / "firmware"))
HOST_TARGET = "host"
_UNITS = {"": 1, "K": 1024, "M": 1024 * 1024}


class BoardTableError(Exception):
    """The board table is missing or inconsistent; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Board:
    """One target board.

    Attributes:
        name: board name (lower case, a key of boards.json).
        target: the CPU (``--target`` value), e.g. ``cortex-m4``.
        flash_bytes: code and constant memory (memory.ld's FLASH region).
        ram_bytes: data memory (memory.ld's RAM region, the stack included).
        description: what it is.
        platform: the firmware's board-support code (qemu, stm32f4, nrf52).
        qemu_machine: the ``qemu-system-arm -M`` name, or None for real boards.
        pyocd_target: pyOCD's target name for ``tess flash``, or None (QEMU only).
        spec: the board's boards.json entry as written.
    """

    name: str
    target: str
    flash_bytes: int
    ram_bytes: int
    description: str
    platform: str
    qemu_machine: str = None
    pyocd_target: str = None
    spec: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def linker_memory(script_text):
    """``{"FLASH": bytes, "RAM": bytes}`` from a linker script's MEMORY block.

    Args:
        script_text: the contents of a memory.ld.
    """
    sizes = {}
    for region in ("FLASH", "RAM"):
        match = re.search(rf"^\s*{region}\s*\([^)]*\)\s*:.*LENGTH\s*=\s*(\d+)\s*([KM]?)", script_text, re.MULTILINE)
        if match:
            sizes[region] = int(match.group(1)) * _UNITS[match.group(2)]
    return sizes


@functools.lru_cache(maxsize=4)
def _load(firmware_dir):
    table_path = Path(firmware_dir) / "boards" / "boards.json"
    try:
        table = json.loads(table_path.read_text())
    except FileNotFoundError:
        raise BoardTableError(
            f"the board table {table_path} does not exist. tess-keras reads its boards from the repository's "
            "firmware/ folder: install it with `pip install -e .` from a checkout, or point TESS_FIRMWARE_DIR at "
            "a copy of firmware/."
        ) from None
    except (OSError, ValueError) as error:
        raise BoardTableError(f"cannot read the board table {table_path}: {error}. Restore it from git.") from None
    boards = {}
    for name, spec in table.items():
        script = Path(firmware_dir) / "boards" / name / "memory.ld"
        sizes = linker_memory(script.read_text()) if script.is_file() else {}
        missing = [key for key in ("target", "platform", "description") if key not in spec]
        if missing or set(sizes) != {"FLASH", "RAM"}:
            problem = f"no {', '.join(missing)} entry" if missing else f"no FLASH and RAM regions in {script}"
            raise BoardTableError(f"board {name!r} in {table_path} is incomplete ({problem}). Restore it from git.")
        boards[name.lower()] = Board(
            name.lower(), spec["target"], sizes["FLASH"], sizes["RAM"], spec["description"], spec["platform"],
            spec.get("qemu_machine"), spec.get("pyocd_target"), dict(spec),
        )
    return boards


def all_boards():
    """Every board, ``{name: Board}``, in the table's order.

    Raises:
        BoardTableError: the table or a board's memory.ld is missing or incomplete.
    """
    return dict(_load(str(FIRMWARE_DIR)))


def get_board(name):
    """The board called ``name`` (case-insensitive), or None if there is none."""
    return all_boards().get(str(name).lower())


def default_boards():
    """``{target: board name}``: each core's first QEMU board (what ``--target`` alone exports for);
    ``host`` maps to None (no memory limit)."""
    defaults = {}
    for board in all_boards().values():
        if board.qemu_machine and board.target not in defaults:
            defaults[board.target] = board.name
    defaults[HOST_TARGET] = None
    return defaults


def targets():
    """The ``--target`` values: every core in the table, then ``host``."""
    return tuple(default_boards())


def qemu_boards():
    """Names of the boards ``tess simulate`` runs (those with a QEMU machine)."""
    return [name for name, board in all_boards().items() if board.qemu_machine]


def real_boards():
    """Names of the boards ``tess flash`` programs (those with a pyOCD target)."""
    return [name for name, board in all_boards().items() if board.pyocd_target]


def names_for_help(kind="all"):
    """The board names as one comma-separated string for ``--help`` (never fails).

    Args:
        kind: ``"all"``, ``"qemu"`` (``tess simulate``) or ``"real"`` (``tess flash``).
    """
    try:
        return ", ".join({"all": all_boards, "qemu": qemu_boards, "real": real_boards}[kind]())
    except BoardTableError:
        return "see firmware/boards/boards.json"


def __getattr__(name):
    # The table as module constants, read on first use (``tess --help`` reads no files).
    if name == "BOARDS":
        return all_boards()
    if name == "DEFAULT_BOARD":
        return default_boards()
    if name == "TARGETS":
        return targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
