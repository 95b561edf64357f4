"""Firmware measurements for an OUT_DIR written by ``tess export``.

For every board: flash and RAM from arm-none-eabi-size. For the QEMU boards:
instructions per time step for the forward step and for the learning step
(QEMU -icount shift=0, SysTick totals; see firmware/boards/qemu), the
event-driven forward against the dense reference forward when the engine was
exported with one, and the RAM on-device learning really needs on the
Cortex-M4 (static RAM plus the deepest stack use the firmware measured).

Usage:
    python bench/firmware_bench.py OUT_DIR [--boards mps2-an386,...] [--json results.json]
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from tess_keras.export.build import FirmwareError, build, load_boards
from tess_keras.export.simulate import simulate


def reserved_stack(elf):
    """Bytes the linker reserved for the stack (__stack_top - __stack_limit)."""
    symbols = {}
    listing = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] in ("__stack_top", "__stack_limit"):
            symbols[fields[2]] = int(fields[0], 16)
    return symbols["__stack_top"] - symbols["__stack_limit"]


def measure(out_dir, boards, timeout=600, dense=True):
    """Builds (and, for QEMU boards, runs) the firmware on each board.

    Returns:
        A list of dicts, one per board, with sizes and, where simulated, the
        per-step counts, the learning RAM and the bit-exactness flag.
        With ``dense``, each QEMU board also runs the firmware that times the
        engine's dense reference forward (TESS_WITH_DENSE_REFERENCE).
    """
    table = load_boards()
    rows = []
    for board in boards:
        try:
            firmware = build(out_dir, board)
        except FirmwareError as error:  # e.g. the network does not fit this board's RAM
            overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", str(error))
            reason = f"{overflow.group(1)} overflowed by {overflow.group(2)} B" if overflow else str(error)
            rows.append({"board": board, "target": table[board]["target"], "error": reason})
            continue
        row = {"board": board, "target": table[board]["target"], **firmware.sizes}
        row["static_ram_bytes"] = firmware.sizes["ram_bytes"] - reserved_stack(firmware.executable)
        if "qemu_machine" in table[board]:
            summary = simulate(out_dir, board, timeout=timeout)
            result = summary["result"]
            if dense:  # a second firmware that also links the dense reference forward
                dense_result = simulate(
                    out_dir, board, timeout=timeout, compare_with_host=False, dense_reference=True
                )["result"]
                result["dense_forward_per_step"] = dense_result["dense_forward_per_step"]
                result["dense_identical_samples"] = dense_result["dense_identical_samples"]
            for key in (
                "accuracy_before", "accuracy_after", "samples_seen", "forward_per_step", "learn_per_step",
                "update_per_call", "dense_forward_per_step", "dense_identical_samples", "spike_rate", "stack_bytes",
            ):
                row[key] = result.get(key)
            row["bit_exact_with_host"] = summary["bit_exact_with_host"]
            row["learning_ram_bytes"] = row["static_ram_bytes"] + result["stack_bytes"]
            if result.get("dense_forward_per_step"):
                row["dense_over_event_driven"] = result["dense_forward_per_step"] / result["forward_per_step"]
        rows.append(row)
    return rows


def markdown(rows):
    """The README tables."""
    lines = [
        "| board | core | flash (B) | RAM (B, 16 KB stack reserved) | static RAM (B) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['board']} | {row['target']} | does not link: {row['error']} | | |")
            continue
        lines.append(
            f"| {row['board']} | {row['target']} | {row['flash_bytes']} / {row['flash_limit']} | "
            f"{row['ram_bytes']} / {row['ram_limit']} | {row['static_ram_bytes']} |"
        )
    simulated = [row for row in rows if row.get("forward_per_step") is not None]
    if simulated:
        lines += [
            "",
            "| board | forward / step | learning step | update / call | dense forward / step | dense ÷ event "
            "| spike rate | learning RAM (B) | accuracy before → after | bit exact |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in simulated:
            dense = row.get("dense_forward_per_step")
            ratio = row.get("dense_over_event_driven")
            lines.append(
                f"| {row['board']} | {row['forward_per_step']:.0f} | {row['learn_per_step']:.0f} | "
                f"{row['update_per_call']:.0f} | {'' if dense is None else f'{dense:.0f}'} | "
                f"{'' if ratio is None else f'{ratio:.2f}x'} | {row['spike_rate']:.3f} | {row['learning_ram_bytes']} | "
                f"{row['accuracy_before']:.3f} → {row['accuracy_after']:.3f} | {row['bit_exact_with_host']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory written by tess export")
    parser.add_argument("--boards", default=",".join(load_boards()), help="comma-separated board names")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense reference forward")
    args = parser.parse_args(argv)
    try:
        rows = measure(args.out_dir, args.boards.split(","), dense=not args.no_dense)
    except FirmwareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
