"""``tess build``."""

from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli import picking
from tess_keras.cli.app import app, console, fail
from tess_keras.export.boards import names_for_help


@app.command()
def build(
    out_dir: Optional[Path] = typer.Argument(
        None, help="Directory written by `tess export` (default: the most recent export under runs/)."
    ),
    board: str = typer.Option(
        None, help=f"{names_for_help()} or host (default: the board tess export recorded)."
    ),
):
    """Compile the exported network and the demo app into firmware (OUT_DIR/build/BOARD)."""
    from tess_keras.export.build import FirmwareError, build as build_firmware

    out_dir = picking.pick_export(out_dir, "build")
    try:
        result = build_firmware(out_dir, board)
    except FirmwareError as error:
        fail(str(error))
    if result.sizes:
        sizes = result.sizes
        console.print(
            f"{result.board}: flash {sizes['flash_bytes']} / {sizes['flash_limit']} B, "
            f"RAM {sizes['ram_bytes']} / {sizes['ram_limit']} B (stack included)"
        )
    console.print(f"wrote {result.executable}")
