"""Board presets: the memory a generated engine must fit.

Sizes are those of the boards' data sheets and, for the QEMU machines, of
the memories QEMU 7.2 models (the firmware's linker scripts in
``firmware/boards/<name>/memory.ld`` use the same numbers; a test keeps
them in step). ``flash`` is what holds code and constants, ``ram`` what
holds data.
"""

import dataclasses

KIB = 1024
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Board:
    """One target board.

    Attributes:
        name: preset name (lower case).
        target: the CPU (``--target`` value).
        flash_bytes: code and constant memory.
        ram_bytes: data memory.
        description: what it is.
        qemu_machine: the ``qemu-system-arm -M`` name, or None for real boards.
    """

    name: str
    target: str
    flash_bytes: int
    ram_bytes: int
    description: str
    qemu_machine: str = None


BOARDS = {
    board.name: board
    for board in (
        Board("mps2-an386", "cortex-m4", 4 * MIB, 4 * MIB,
              "Arm MPS2 AN386, Cortex-M4F (QEMU): 4 MB SSRAM1 code, 4 MB SSRAM2/3 data", "mps2-an386"),
        Board("mps2-an500", "cortex-m7", 4 * MIB, 4 * MIB,
              "Arm MPS2 AN500, Cortex-M7 (QEMU): 4 MB SSRAM1 code, 4 MB SSRAM2/3 data", "mps2-an500"),
        Board("mps2-an505", "cortex-m33", 4 * MIB, 4 * MIB,
              "Arm MPS2 AN505, Cortex-M33 (QEMU): 4 MB SSRAM1 code, 4 MB SSRAM2/3 data", "mps2-an505"),
        Board("mps3-an547", "cortex-m55", 512 * KIB, 512 * KIB,
              "Arm MPS3 AN547, Cortex-M55 (QEMU): 512 KB ITCM code, 512 KB DTCM data", "mps3-an547"),
        Board("nucleo-f446re", "cortex-m4", 512 * KIB, 128 * KIB,
              "ST NUCLEO-F446RE, STM32F446RE Cortex-M4F: 512 KB flash, 128 KB SRAM"),
        Board("nrf52840-dk", "cortex-m4", 1 * MIB, 256 * KIB,
              "Nordic nRF52840-DK, Cortex-M4F: 1 MB flash, 256 KB RAM"),
        Board("stm32f746g-disco", "cortex-m7", 1 * MIB, 320 * KIB,
              "ST STM32F746G-DISCO, Cortex-M7: 1 MB flash, 320 KB SRAM"),
    )
}

# The board each --target uses when --board is not given.
DEFAULT_BOARD = {
    "cortex-m4": "mps2-an386",
    "cortex-m7": "mps2-an500",
    "cortex-m33": "mps2-an505",
    "cortex-m55": "mps3-an547",
    "host": None,
}
TARGETS = tuple(DEFAULT_BOARD)


def get_board(name):
    """The preset called ``name`` (case-insensitive), or None if there is none."""
    return BOARDS.get(str(name).lower())
