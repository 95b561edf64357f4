"""Run the firmware in QEMU and compare it with the host build (``tess simulate``).

QEMU runs with semihosting (console and exit code) and ``-icount shift=0``:
every guest instruction advances the virtual clock by 1 ns, so the SysTick
totals the demo prints convert exactly into instruction counts.
"""

import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path

from tess_keras.export.build import (
    HOST_BOARD, FirmwareError, build, check_engine_dir, find_tools, load_boards, resolve_board,
)

# The fields of the result line that must agree bit for bit with the host build.
BIT_EXACT_FIELDS = (
    "state_hash", "logits_hash", "logits_sum", "correct_before", "correct_after", "samples_seen",
    "reloaded_state_hash", "correct_reloaded",
)
RESULT_KEY = '"tess_result"'
PROFILE_KEY = '"tess_profile"'
PROFILE_FIELDS = ("layer", "forward_per_step", "learn_per_step", "update_per_call", "synaptic_events_per_step")


def parse_profile(lines):
    """The per-layer profile rows of a console transcript (layer order), as dicts of PROFILE_FIELDS."""
    rows = {}
    for line in lines:
        text = line.strip()
        if text.startswith("{") and PROFILE_KEY in text:
            row = json.loads(text)
            rows[row["tess_profile"]] = {field: row.get(field) for field in PROFILE_FIELDS}
    return [rows[index] for index in sorted(rows)]


def qemu_command(board, elf):
    """The qemu-system-arm command line that runs ``elf`` on ``board``."""
    machine = load_boards()[board]["qemu_machine"]
    return [
        "qemu-system-arm", "-machine", machine, "-nographic", "-monitor", "none", "-serial", "none",
        "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf),
    ]


def parse_result(lines):
    """The last JSON result line in a console transcript, as a dict (None if absent)."""
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("{") and RESULT_KEY in text:
            return json.loads(text)
    return None


def run_console(command, timeout, on_line=None, until=None):
    """Runs ``command``, streaming its output line by line.

    Args:
        command: argv list.
        timeout: seconds before the process is killed.
        on_line: called with each output line as it arrives.
        until: optional predicate on a line; the first line it accepts ends
            the run (for firmware that sleeps forever after its result, as
            real-board images do).

    Returns:
        ``(exit_code, lines)``; exit_code is None when the timeout killed it
        and 0 when ``until`` ended it.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    pending, lines = b"", []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                process.wait()
                return None, lines
            if not selector.select(timeout=min(remaining, 0.5)):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                lines.append(line)
                if on_line:
                    on_line(line)
                if until is not None and until(line):
                    process.kill()
                    process.wait()
                    return 0, lines
        if pending:
            lines.append(pending.decode("utf-8", "replace"))
            if on_line:
                on_line(lines[-1])
        return process.wait(), lines
    finally:
        selector.close()
        process.stdout.close()


def run_host_reference(out_dir, timeout=120):
    """Builds and runs the host build of the demo; returns its result line as a dict."""
    result = build(out_dir, HOST_BOARD)
    code, lines = run_console([str(result.executable)], timeout)
    reference = parse_result(lines)
    if code != 0 or reference is None:
        tail = "\n".join(lines[-20:])
        raise FirmwareError(f"the host build of the demo failed (exit code {code}):\n{tail}")
    return reference


def _write_json_atomically(path, payload):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(temporary, path)


def simulate(out_dir, board=None, timeout=300, on_line=None, compare_with_host=True, dense_reference=False):
    """Builds the firmware, runs it in QEMU and writes ``OUT_DIR/simulate.json``.

    Args:
        out_dir: directory written by ``tess export``.
        board: a QEMU board (mps2-an386, mps2-an500, mps2-an505, mps3-an547);
            None takes the one report.json records.
        timeout: seconds QEMU may run.
        on_line: called with each console line as it arrives.
        compare_with_host: also build and run the host reference and set
            ``bit_exact_with_host``.
        dense_reference: run the firmware that also times the engine's dense
            reference forward (``dense_forward_per_step`` in the result); its
            summary goes to ``simulate-dense.json``.

    Returns:
        The dict written to simulate.json: ``result`` (the firmware's result
        line), ``board``, ``qemu_command``, ``bit_exact_with_host``,
        ``mismatched_fields``, ``host_result`` and ``profile`` (one row per
        layer: ``layer``, ``forward_per_step``, ``learn_per_step``,
        ``update_per_call`` in instructions, ``synaptic_events_per_step``;
        the time between layers, in tess_step's own code and the profile
        hook, is in the totals but in no row).

    Raises:
        FirmwareError: not a QEMU board, QEMU missing, a timeout, a crash or
            no result line.
    """
    out_dir = Path(out_dir).resolve()
    requested = board
    board = resolve_board(out_dir, board)
    boards = load_boards()
    qemu_boards = ", ".join(name for name, spec in boards.items() if "qemu_machine" in spec)
    if board == HOST_BOARD and requested is None:
        raise FirmwareError(
            f"{out_dir} was exported for the host (--target host), which QEMU does not run; run the host build with "
            f"`tess build {out_dir}`, or simulate a Cortex-M board with --board (one of {qemu_boards})."
        )
    if board == HOST_BOARD or "qemu_machine" not in boards[board]:
        raise FirmwareError(
            f"board {board!r} does not run in QEMU; simulate one of {qemu_boards}, "
            f"or run it on the hardware with `tess flash {out_dir} --board {board}`."
        )
    check_engine_dir(out_dir)
    find_tools(board)  # the compiler's message first: it names more packages
    if shutil.which("qemu-system-arm") is None:
        raise FirmwareError(
            "qemu-system-arm is not on PATH. On Debian/Ubuntu install it with `apt-get install qemu-system-arm`."
        )
    firmware = build(out_dir, board, dense_reference=dense_reference)
    command = qemu_command(board, firmware.executable)
    code, lines = run_console(command, timeout, on_line)
    if code is None:
        raise FirmwareError(
            f"QEMU ran past the {timeout} s timeout without finishing; raise --timeout or export a smaller demo set."
        )
    result = parse_result(lines)
    if code != 0 or result is None:
        tail = "\n".join(lines[-20:])
        raise FirmwareError(f"the firmware did not finish cleanly in QEMU (exit code {code}):\n{tail}")

    host = run_host_reference(out_dir) if compare_with_host else None
    mismatched = [field for field in BIT_EXACT_FIELDS if host is not None and result.get(field) != host.get(field)]
    summary = {
        "board": board,
        "result": result,
        "bit_exact_with_host": None if host is None else not mismatched,
        "mismatched_fields": mismatched,
        "host_result": host,
        "profile": parse_profile(lines),
        "sizes": firmware.sizes,
        "qemu_command": command,
    }
    # The dense-reference firmware is a measurement build: keep simulate.json for the real one.
    _write_json_atomically(out_dir / ("simulate-dense.json" if dense_reference else "simulate.json"), summary)
    return summary
