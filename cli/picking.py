"""What ``tess export``, ``build``, ``simulate`` and ``flash`` act on when no directory is given.

``tess train`` writes its runs under ``runs/`` of the current directory and
``tess export`` writes into ``RUN_DIR/export-<target>/``, so the most recent
finished run (one with model.keras) and the most recent export (one with an
export manifest) can be found there. The commands print what they picked.
"""

from pathlib import Path

from tess_keras.cli.app import console, fail

RUNS_DIR = Path("runs")
EXPORT_PREFIX = "export-"


def _mtime(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _run_time(run_dir):
    times = [t for t in (_mtime(run_dir / "model.keras"), _mtime(run_dir / "summary.json")) if t is not None]
    return max(times) if times else None


def finished_runs(root=RUNS_DIR):
    """Run directories under ``root`` that hold a model.keras, newest first.

    Args:
        root: the folder ``tess train`` writes its runs into (default ``runs``).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [d for d in root.iterdir() if d.is_dir() and (d / "model.keras").is_file()]
    return sorted(runs, key=lambda d: (_run_time(d) or 0.0, d.name), reverse=True)


def exports(root=RUNS_DIR):
    """Export directories ``root/*/export-*`` that carry an export manifest, newest first.

    Args:
        root: the folder ``tess train`` writes its runs into (default ``runs``).
    """
    from tess_keras.export.outdir import MANIFEST

    root = Path(root)
    if not root.is_dir():
        return []
    found = [d for d in root.glob(f"*/{EXPORT_PREFIX}*") if d.is_dir() and (d / MANIFEST).is_file()]
    return sorted(found, key=lambda d: (_mtime(d / MANIFEST) or 0.0, str(d)), reverse=True)


def default_export_dir(run_dir, target):
    """Where an export of ``run_dir`` for ``target`` goes without --out: ``RUN_DIR/export-<target>``."""
    return Path(run_dir) / f"{EXPORT_PREFIX}{target}"


def pick_run(run_dir, root=RUNS_DIR):
    """``run_dir`` if given, else the most recent finished run under ``root`` (printed).

    Args:
        run_dir: the RUN_DIR argument, or None.
        root: where runs are looked for.
    """
    if run_dir is not None:
        return Path(run_dir)
    runs = finished_runs(root)
    if not runs:
        unfinished = [d for d in Path(root).iterdir() if d.is_dir()] if Path(root).is_dir() else []
        where = f"{root}/ holds {len(unfinished)} run(s), none finished (no model.keras yet)" if unfinished else (
            f"there is no {root}/ folder in {Path.cwd()}" if not Path(root).is_dir() else f"{root}/ is empty")
        fail(
            f"no trained run to export: {where}. Train one first with `tess train --dataset digits` (it writes "
            f"{root}/<dataset>-<rule>-<time>/), run this command from the folder that holds {root}/, or name the "
            "run: `tess export RUN_DIR --target cortex-m4`."
        )
    console.print(f"using run {runs[0]}")
    return runs[0]


def pick_export(out_dir, command, root=RUNS_DIR):
    """``out_dir`` if given, else the most recent export under ``root``/*/export-* (printed).

    Args:
        out_dir: the OUT_DIR argument, or None.
        command: the command's name, for the message (build, simulate, flash).
        root: where runs (and their exports) are looked for.
    """
    if out_dir is not None:
        return Path(out_dir)
    found = exports(root)
    if not found:
        fail(
            f"no export to {command}: found no {root}/*/{EXPORT_PREFIX}*/ folder written by `tess export` in "
            f"{Path.cwd()}. Export the latest run first with `tess export --target cortex-m4`, or name the "
            f"export directory: `tess {command} OUT_DIR`."
        )
    console.print(f"using export {found[0]}")
    return found[0]
