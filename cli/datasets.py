"""``tess datasets``: which datasets are on disk, where each one must be, and what a run would use."""

import json

import typer

from tess_keras.cli.app import app, console, fail


def _state(entry):
    from rich.markup import escape

    samples = entry["samples"]
    if samples is None and entry["status"] == "found":
        return f"[green]found[/] ({escape(entry['detail'])})" if entry["detail"] else "[green]found[/]"
    if entry["status"] in ("found", "incomplete"):
        colour = "green" if entry["status"] == "found" else "yellow"
        total = sum(samples.values())
        state = (f"[{colour}]{entry['status']}[/], {total} samples\n"
                 f"train {samples['train']} / validation {samples['validation']} / test {samples['test']}")
        if entry["skipped"]:
            state += "\nignored: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in entry["skipped"].items())
        if entry["status"] == "incomplete":
            more = "; ..." if len(entry["incomplete"]) > 3 else ""
            state += "\n" + escape("; ".join(entry["incomplete"][:3])) + more
        return state
    if entry["status"] == "invalid":
        return f"[red]invalid[/]: {escape(entry['detail'])}"
    return "[red]missing[/]"


def _print_entries(entries, root):
    """One block per dataset: a heading line, then status, path, layout and
    source as label / value rows whose values wrap at word boundaries in the
    full width (a path is broken only where it is longer than a line)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table

    from tess_keras.data import catalog

    out = Console()  # stdout: the listing is the command's output
    out.print(f"[bold]Datasets in {escape(str(root))}[/]\n")
    for entry in entries:
        info = catalog.INFO[entry["name"]]
        layout, source = (escape(text.replace("DATA_DIR", str(root))) for text in (info.layout, info.source))
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="dim", no_wrap=True)
        rows.add_column(overflow="fold")
        for label, value in (("status", _state(entry)), ("path", escape(entry["path"])), ("layout", layout),
                             ("source", source)):
            rows.add_row(label, value)
        out.print(f"[bold]{escape(entry['name'])}[/]  T={info.time_steps}")
        out.print(Padding(rows, (0, 0, 1, 2)))


@app.command()
def datasets(
    data_dir: str = typer.Option("", envvar="TESS_DATA_DIR", help="Where datasets live (default ~/.tess/data)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list (status, path, samples and per-class "
                                 "counts per split) instead of the table."),
    validation_fraction: float = typer.Option(None, help="Validation share of the training data to count with "
                                              "(default: each dataset's own, as tess train)."),
    seed: int = typer.Option(0, help="The run's seed (DVS Gesture's validation users depend on it)."),
):
    """List every dataset with its status (found with N samples, incomplete,
    invalid or missing), the path it is read from, the train / validation /
    test samples a run would use, and the exact layout it needs. Counts come
    from the file lists and labels (nothing is decoded). Nothing is
    downloaded: fetch the files yourself and put them in that layout."""
    from tess_keras.data import catalog, counts
    from tess_keras.data.base import DatasetError, resolve_data_dir

    try:
        root = resolve_data_dir(data_dir or None)
        entries = [counts.report(name, root, validation_fraction, seed) for name in catalog.INFO]
    except DatasetError as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    _print_entries(entries, root)
    missing = sum(entry["status"] != "found" for entry in entries)
    if missing:
        console.print(f"{missing} dataset(s) missing or incomplete; nothing is downloaded automatically. Put the files "
                      f"in the layout shown (under {root}, or pass --data-dir / set TESS_DATA_DIR).")
