"""``tess build``."""

from pathlib import Path

import typer

from tess_keras.cli.app import app, console, fail


@app.command()
def build(
    out_dir: Path = typer.Argument(..., help="Directory written by `tess export`."),
    board: str = typer.Option(
        None, help="mps2-an386, mps2-an500, mps2-an505, mps3-an547, nucleo-f446re, nrf52840-dk or host "
        "(default: the board tess export recorded)."
    ),
):
    """Compile the exported network and the demo app into firmware (OUT_DIR/build/BOARD)."""
    from tess_keras.export.build import FirmwareError, build as build_firmware

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
