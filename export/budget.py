"""Flash and RAM of the generated engine, per layer, against a board's budget."""

from tess_keras.export import layers as layer_kinds
from tess_keras.export.layers.base import BudgetRow

# Machine code of the engine, runtime, demo application and startup (Thumb-2):
# about 13 KB measured with arm-none-eabi-size for the digits mcu network, rounded up.
CODE_ESTIMATE_BYTES = 16 * 1024
# The stack the firmware reserves (__stack_size in firmware/boards/common/sections.ld).
STACK_ESTIMATE_BYTES = 16 * 1024


def engine_rows(spec):
    """Per-layer memory of the engine generated from ``spec`` (each kind's row), then the
    scratch the whole engine shares and the code and stack."""
    rows = []
    for layer in spec.layers:
        row = layer_kinds.for_spec(layer).budget_row(layer)
        if row is not None:
            rows.append(row)
    learning = [layer for layer in spec.spiking if layer.learn]
    scratch = 4 * max([layer.num_neurons for layer in spec.spiking] + [spec.num_classes]) + 8 * spec.num_classes
    if learning:
        scratch += 4 * max(layer.num_neurons for layer in learning)  # (e_pre, e_post) int16 pairs
        scratch += 4 * max(layer.lsg_size for layer in learning)
        scratch += 8 * max(layer.out_channels for layer in learning)
    rows.append(BudgetRow("scratch", 0, scratch, "accumulators, learning signals, softmax"))
    rows.append(BudgetRow("code + stack", CODE_ESTIMATE_BYTES, STACK_ESTIMATE_BYTES,
                          "engine, runtime and demo code (estimate); the firmware's reserved stack"))
    return rows


def demo_row(learn_x, test_x):
    size = int(learn_x.size + test_x.size + len(learn_x) + len(test_x))
    return BudgetRow("demo data", size, 0, f"{len(learn_x)} + {len(test_x)} int8 samples with labels")


def totals(rows):
    return sum(r.flash for r in rows), sum(r.ram for r in rows)


def check_fits(rows, board):
    """(flash, ram, fits); ``board`` None means no limit (host)."""
    flash, ram = totals(rows)
    if board is None:
        return flash, ram, True
    return flash, ram, flash <= board.flash_bytes and ram <= board.ram_bytes


def render_table(rows, board, console):
    """Print the per-layer table with rich."""
    from rich.table import Table

    flash, ram = totals(rows)
    title = "memory" if board is None else f"memory on {board.name} ({board.flash_bytes // 1024} KB flash, {board.ram_bytes // 1024} KB RAM)"
    table = Table(title=title)
    table.add_column("layer")
    table.add_column("flash B", justify="right")
    table.add_column("RAM B", justify="right")
    table.add_column("what")
    for row in rows:
        table.add_row(row.name, f"{row.flash:,}", f"{row.ram:,}", row.detail)
    table.add_row("total", f"{flash:,}", f"{ram:,}", "", style="bold")
    console.print(table)


def over_budget_message(rows, board):
    """The refusal: which memory overflows, by how much, and the largest contributors."""
    flash, ram = totals(rows)
    problems = []
    for kind, used, limit in (("RAM", ram, board.ram_bytes), ("flash", flash, board.flash_bytes)):
        if used > limit:
            key = (lambda r: r.ram) if kind == "RAM" else (lambda r: r.flash)
            largest = sorted(rows, key=key, reverse=True)[:3]
            names = ", ".join(f"{r.name} ({key(r):,} B)" for r in largest)
            problems.append(f"{kind} {used:,} B > {limit:,} B (largest: {names})")
    return (
        f"the model does not fit {board.name}: {'; '.join(problems)}. Learn fewer layers (--learn readout), "
        f"use a smaller network, or choose a board with more memory (--board)."
    )
