"""``tess flash``."""

from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli import picking
from tess_keras.cli.app import app, console, fail
from tess_keras.export.boards import names_for_help


@app.command()
def flash(
    out_dir: Optional[Path] = typer.Argument(
        None, help="Directory written by `tess export` (default: the most recent export under runs/)."
    ),
    board: str = typer.Option(
        None, help=f"Real board: {names_for_help('real')} (default: the board tess export recorded)."
    ),
    probe: str = typer.Option(None, help="Unique id of the debug probe (when several are connected)."),
):
    """Build the firmware for a real board and program it through pyOCD."""
    from tess_keras.export.build import FirmwareError
    from tess_keras.export.flash import flash as flash_board

    out_dir = picking.pick_export(out_dir, "flash")
    try:
        result = flash_board(out_dir, board, probe)
    except FirmwareError as error:
        fail(str(error))
    console.print(
        f"flashed {result['image']} to {result['board']} (probe {result['probe']}); "
        "the result line appears on the board's serial port at 115200 baud."
    )
