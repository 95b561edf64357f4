"""The export directory: its manifest, what may be replaced, and the atomic swap.

``tess export`` writes everything into a temporary sibling of OUT_DIR and swaps
it into place in one step, so OUT_DIR is always either the previous export or
the new one, also when the export is killed. The new directory carries a
manifest, ``.tess-export.json``, listing every file the export wrote with its
SHA-256 (a folder it wrote, such as ``runtime/``, as a nested listing); an existing OUT_DIR is replaced only when it is empty or is such an
export whose listed files are unchanged (plus what ``tess build`` and
``tess simulate`` add to it). Anything else is refused, never deleted.
Temporary folders a killed export left behind are removed by the next export.
"""

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

MANIFEST = ".tess-export.json"
MANIFEST_VERSION = 1
# What `tess build` / `tess simulate` add to an export directory (replaced with it).
DERIVED_FILES = {"simulate.json", "simulate-dense.json", "host_harness", "host_harness.cc"}
BUILD_DIR = "build"
# Files an export of tess-keras before the manifest wrote (for its leftovers only).
_LEGACY_NAMES = {
    "tess_engine.h", "tess_engine.cc", "tess_runtime.h", "model.tflite", "model_data.h", "model_data.cc",
    "demo_data.h", "demo_data.cc", "report.json", "previous", BUILD_DIR, *DERIVED_FILES,
}
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutDirError(Exception):
    """OUT_DIR cannot be used; the message names the problem and the fix."""


def sha256(path):
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory, **fields):
    """Write ``directory/.tess-export.json`` listing every file in ``directory``.

    Args:
        directory: the finished (temporary) export directory.
        **fields: recorded as well, e.g. ``target``, ``board``, ``run_dir``.

    Returns:
        The manifest dict.
    """
    directory = Path(directory)
    files = _listing(directory)
    files.pop(MANIFEST, None)
    manifest = {"tess_export": MANIFEST_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields,
                "files": files}
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _listing(directory):
    """``{name: SHA-256}`` of a directory's files, ``{name: {...}}`` for its folders."""
    return {p.name: _listing(p) if p.is_dir() else sha256(p)
            for p in sorted(directory.iterdir()) if not p.is_symlink() and (p.is_file() or p.is_dir())}


def read_manifest(directory):
    """The manifest of an export directory, or None when it has none (or an unreadable one)."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def _is_cmake_build_tree(path):
    return path.is_dir() and all(child.is_dir() and (child / "CMakeCache.txt").is_file() for child in path.iterdir())


def _foreign_entries(directory, manifest):
    """Entries of a previous export directory that its export (or build/simulate) did not write."""
    return _foreign_in(Path(directory), manifest["files"], "", top=True)


def _foreign_in(directory, listed, prefix, top=False):
    foreign = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        name, wanted = entry.name, listed.get(entry.name)
        if top and name == MANIFEST:
            continue
        if isinstance(wanted, dict) and entry.is_dir() and not entry.is_symlink():
            foreign += _foreign_in(entry, wanted, f"{prefix}{name}/")
        elif wanted is not None:
            if not entry.is_file() or entry.is_symlink() or sha256(entry) != wanted:
                foreign.append(f"{prefix}{name} (changed since the export wrote it)")
        elif top and name in DERIVED_FILES and entry.is_file():
            continue
        elif top and name == BUILD_DIR and _is_cmake_build_tree(entry):
            continue
        else:
            foreign.append(prefix + name)
    return foreign


def check_replaceable(out_dir):
    """Raise OutDirError unless OUT_DIR is new, empty or a previous export of its own files.

    Args:
        out_dir: the --out directory.

    Returns:
        ``"new"``, ``"empty"`` or ``"previous"``.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise OutDirError(f"{out_dir} is a file or a link, not a directory; choose a new directory for --out.")
    if not out_dir.exists():
        return "new"
    try:
        entries = list(out_dir.iterdir())
    except OSError as error:
        raise OutDirError(f"cannot read {out_dir}: {error.strerror or error}. Choose another --out.") from None
    if not entries:
        return "empty"
    manifest = read_manifest(out_dir)
    if manifest is None:
        names = sorted(p.name for p in entries)
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise OutDirError(
            f"{out_dir} already holds files and is not a previous `tess export` output (it has no {MANIFEST}): "
            f"{shown}. tess export replaces only its own exports and will not delete these. Choose a new or "
            f"empty --out directory, or move the files away."
        )
    foreign = _foreign_entries(out_dir, manifest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise OutDirError(
            f"{out_dir} is a previous export but also holds files that `tess export` did not write: {shown}. "
            f"Replacing the export would delete them, so it stops here. Move them out of {out_dir}, or choose "
            f"another --out directory."
        )
    return "previous"


def _leftover_pattern(name):
    return re.compile(rf"^\.{re.escape(name)}\.tess-(new|old)-(\d+)-[a-z0-9_]+$")


def _legacy_pattern(name):
    # What exports before the manifest left: mkdtemp(prefix=".NAME.") and ".NAME.old.".
    return re.compile(rf"^\.{re.escape(name)}\.(old\.)?[a-z0-9_]{{8}}$")


def _pid_alive(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _only_legacy_export_files(path):
    try:
        return path.is_dir() and all(p.name in _LEGACY_NAMES for p in path.iterdir())
    except OSError:
        return False


def clean_leftovers(out_dir):
    """Remove the temporary folders killed exports left next to OUT_DIR.

    Only folders named as this module names them (``.NAME.tess-new-PID-*``,
    ``.NAME.tess-old-PID-*``) whose process is gone are removed, and folders
    of earlier tess-keras versions (``.NAME.xxxxxxxx``) holding nothing but
    export files. If OUT_DIR itself is missing because a swap was cut short
    (systems without an atomic exchange), the previous export is put back.

    Args:
        out_dir: the --out directory.

    Returns:
        The names removed.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    pattern, legacy = _leftover_pattern(out_dir.name), _legacy_pattern(out_dir.name)
    removed = []
    for entry in sorted(parent.iterdir(), key=lambda p: p.name):
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            if _pid_alive(int(match.group(2))):
                continue  # another export is writing it now
            if match.group(1) == "old" and not out_dir.exists() and read_manifest(entry) is not None:
                os.rename(entry, out_dir)  # an interrupted swap: the previous export comes back
                continue
        elif not (legacy.match(entry.name) and not entry.is_symlink() and _only_legacy_export_files(entry)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def make_temporary(out_dir):
    """A new temporary sibling of OUT_DIR to write the export into (mode as umask allows)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tess-new-{os.getpid()}-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 is not what a project directory wants
    return tmp


def _exchange(a, b):
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def swap_into_place(tmp, out_dir):
    """Move the finished export ``tmp`` to OUT_DIR, replacing what is there in one step.

    Checks again that OUT_DIR may be replaced (files can appear during a long
    export). On Linux the two directories are exchanged atomically; elsewhere
    the old one is renamed aside first (``clean_leftovers`` restores it if
    the process dies in between).

    Raises:
        OutDirError: OUT_DIR now holds files the export did not write.
    """
    tmp, out_dir = Path(tmp), Path(out_dir)
    state = check_replaceable(out_dir)
    if state == "new":
        os.rename(tmp, out_dir)
        return
    if _exchange(tmp, out_dir):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous export
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tess-old-{os.getpid()}-", dir=out_dir.parent))
    os.rmdir(old)
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
