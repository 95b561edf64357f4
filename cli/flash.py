"""``tess flash``."""

from pathlib import Path

import typer

from tess_keras.cli.app import app, console, fail


@app.command()
def flash(
    out_dir: Path = typer.Argument(..., help="Directory written by `tess export`."),
    board: str = typer.Option(..., help="Real board: nucleo-f446re or nrf52840-dk."),
    probe: str = typer.Option(None, help="Unique id of the debug probe (when several are connected)."),
):
    """Build the firmware for a real board and program it through pyOCD."""
    from tess_keras.export.build import FirmwareError
    from tess_keras.export.flash import flash as flash_board

    try:
        result = flash_board(out_dir, board, probe)
    except FirmwareError as error:
        fail(str(error))
    console.print(
        f"flashed {result['image']} to {result['board']} (probe {result['probe']}); "
        "the result line appears on the board's serial port at 115200 baud."
    )
