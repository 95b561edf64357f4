"""``tess datasets``: which datasets are on disk, and where each one must be."""

import typer

from tess_keras.cli.app import app, console


@app.command()
def datasets(
    data_dir: str = typer.Option("", envvar="TESS_DATA_DIR", help="Where datasets live (default ~/.tess/data)."),
):
    """List every dataset with its status (found with N samples, or missing),
    the path it is read from, and the exact layout it needs. Nothing is
    downloaded: fetch the files yourself and put them in that layout."""
    from rich.console import Console
    from rich.table import Table

    from tess_keras.data import catalog
    from tess_keras.data.base import resolve_data_dir

    root = resolve_data_dir(data_dir or None)
    table = Table(title=f"Datasets in {root}", show_lines=True)
    for column in ("dataset", "T", "status", "path", "expected layout / source"):
        table.add_column(column, overflow="fold")
    missing = 0
    for name, info in catalog.INFO.items():
        status = catalog.scan(name, root)
        if status.found:
            state = f"[green]found[/], {status.samples} samples"
        else:
            missing += 1
            state = "[red]missing[/]"
        layout, source = (text.replace("DATA_DIR", str(root)) for text in (info.layout, info.source))
        table.add_row(name, str(info.time_steps), state, str(status.path), f"{layout}\n[dim]source: {source}[/]")
    Console().print(table)
    if missing:
        console.print(f"{missing} dataset(s) missing; nothing is downloaded automatically. Put the files in the layout "
                      f"shown (under {root}, or pass --data-dir / set TESS_DATA_DIR).")
