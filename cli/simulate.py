"""``tess simulate``."""

from pathlib import Path
from typing import Optional

import typer

from tess_keras.cli import picking
from tess_keras.cli.app import app, console, fail
from tess_keras.export.boards import names_for_help


@app.command()
def simulate(
    out_dir: Optional[Path] = typer.Argument(
        None, help="Directory written by `tess export` (default: the most recent export under runs/)."
    ),
    board: str = typer.Option(
        None, help=f"QEMU board: {names_for_help('qemu')} (default: the board tess export recorded)."
    ),
    timeout: float = typer.Option(300.0, min=1.0, help="Seconds QEMU may run."),
    host_check: bool = typer.Option(True, help="Also run the host build and compare bit for bit."),
):
    """Run the firmware in QEMU, stream its console and write OUT_DIR/simulate.json."""
    from tess_keras.export.build import FirmwareError
    from tess_keras.export.simulate import simulate as run_simulation

    out_dir = picking.pick_export(out_dir, "simulate")
    try:
        summary = run_simulation(out_dir, board, timeout, on_line=print, compare_with_host=host_check)
    except FirmwareError as error:
        fail(str(error))
    result = summary["result"]
    console.print(
        f"{summary['board']}: accuracy {result['accuracy_before']:.4f} -> {result['accuracy_after']:.4f} after "
        f"learning from {result['samples_seen']} samples; bit exact with host: {summary['bit_exact_with_host']}"
    )
    _print_profile(summary.get("profile") or [])
    console.print(
        f"saved state {result['state_bytes']} B; cleared, reloaded: state hash {result['reloaded_state_hash']} "
        f"(learned {result['state_hash']}), {result['correct_reloaded']}/{result['test_samples']} correct "
        f"(after learning {result['correct_after']}); a corrupted copy was refused with status "
        f"{result['corrupt_load_status']}"
    )
    if summary["bit_exact_with_host"] is False:
        fail(f"the firmware and the host build disagree on {', '.join(summary['mismatched_fields'])}.")
    console.print(f"wrote {Path(out_dir) / 'simulate.json'}")


def _print_profile(rows):
    """The per-layer profile of simulate.json as a table (instructions; events per step)."""
    from rich.table import Table

    if not rows:
        return
    table = Table(title="per-layer profile (instructions; the totals also hold tess_step's own code)")
    for column in ("layer", "forward/step", "learning step", "update/call", "synaptic events/step"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        cells = [row[key] for key in ("forward_per_step", "learn_per_step", "update_per_call", "synaptic_events_per_step")]
        table.add_row(row["layer"], *("-" if value is None else f"{value:,.0f}" for value in cells))
    console.print(table)
