"""Program a real board with the firmware over its debug probe (``tess flash``).

Uses pyOCD (CMSIS-DAP, ST-LINK and J-Link probes). The NUCLEO-F446RE's
ST-LINK works out of the box once its CMSIS pack is installed
(``pyocd pack install stm32f446retx``); the nRF52840-DK's J-Link OB needs
SEGGER's J-Link software (pyOCD drives it through pylink) or the board's
CMSIS-DAP firmware. After flashing, the demo prints its JSON result line on
the board's virtual COM port at 115200 baud.
"""

from pathlib import Path

from tess_keras.export.build import FirmwareError, build, check_engine_dir, load_boards, resolve_board

NO_PROBE_MESSAGE = (
    "no debug probe found. Connect the board's debug USB port (ST-LINK on the NUCLEO-F446RE, J-Link OB on "
    "the nRF52840-DK), check that `pyocd list` shows it (on Linux, install the probe's udev rules or run with "
    "permission to access USB), then run `tess flash` again."
)


def real_boards():
    """Names of the boards ``tess flash`` can program (those with a pyOCD target)."""
    return [name for name, spec in load_boards().items() if "pyocd_target" in spec]


def connected_probes():
    """Unique ids of the debug probes pyOCD sees now (none: an empty list)."""
    try:
        from pyocd.core.helpers import ConnectHelper
    except ImportError as error:
        raise FirmwareError(f"pyOCD is not installed ({error}); install it with `pip install pyocd`.") from error
    probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
    return [probe.unique_id for probe in probes]


def flash(out_dir, board=None, probe=None):
    """Builds the firmware for a real board and programs it.

    Args:
        out_dir: directory written by ``tess export``.
        board: a real board (nucleo-f446re, nrf52840-dk); None takes the one the export recorded.
        probe: unique id of the probe to use when several are connected.

    Returns:
        ``{"board", "probe", "image", "sizes"}``.

    Raises:
        FirmwareError: not a real board, no probe (NO_PROBE_MESSAGE), an unknown
            probe id, a missing pyOCD target pack, or a failed programming step.
    """
    out_dir = Path(out_dir).resolve()
    check_engine_dir(out_dir)
    board = resolve_board(out_dir, board)
    spec = load_boards().get(board, {})
    if "pyocd_target" not in spec:
        raise FirmwareError(
            f"board {board!r} is not a real board; flash one of {', '.join(real_boards())} (--board NAME), "
            f"or run this board in QEMU with `tess simulate {out_dir} --board {board}`."
        )
    probes = connected_probes()  # before the build: no probe, no point compiling
    if not probes:
        raise FirmwareError(NO_PROBE_MESSAGE)
    if probe is not None and probe not in probes:
        raise FirmwareError(f"probe {probe!r} is not connected; connected probes: {', '.join(probes)}.")
    if probe is None and len(probes) > 1:
        raise FirmwareError(f"{len(probes)} probes are connected ({', '.join(probes)}); choose one with --probe.")
    chosen = probe or probes[0]
    firmware = build(out_dir, board)

    from pyocd.core.helpers import ConnectHelper
    from pyocd.core.exceptions import Error as PyocdError
    from pyocd.flash.file_programmer import FileProgrammer

    image = firmware.build_dir / "tess_firmware.hex"
    target = spec["pyocd_target"]
    try:
        session = ConnectHelper.session_with_chosen_probe(
            blocking=False, unique_id=chosen, target_override=target, print_wait_message=False
        )
        if session is None:
            raise FirmwareError(NO_PROBE_MESSAGE)
        with session:
            FileProgrammer(session).program(str(image), file_format="hex")
            session.target.reset()
    except PyocdError as error:
        hint = f" If pyOCD does not know the target, install its pack: `pyocd pack install {target}`."
        raise FirmwareError(f"pyOCD could not program {board} through probe {chosen}: {error}.{hint}") from error
    return {"board": board, "probe": chosen, "image": str(image), "sizes": firmware.sizes}
