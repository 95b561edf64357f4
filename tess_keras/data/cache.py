"""On-disk cache of preprocessed event frames.

Decoding events is the slow part of the event pipelines, so the frames are
written once, on first use, to ``DATA_DIR/.tess-cache/<entry>/`` and later
runs memory-map them. An entry is keyed by the dataset, T, the frame size,
any other preprocessing setting, and a fingerprint of the source files (path
relative to the datasets folder, size and modification time), so moving the
datasets folder keeps the cache valid while changing any of these builds a new entry and
the stale entry with the same settings is removed. Entries are written to a
temporary folder and renamed into place, so an interrupted run never leaves a
half-written entry behind.
"""

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from tess_keras.data.catalog import CACHE_FOLDER

CACHE_DIR_ENV = "TESS_CACHE_DIR"
FORMAT_VERSION = 2  # 2: every event binned (1 lost the last event of each recording)
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def fingerprint_files(paths, root=None):
    """A short hash of the files' names, sizes and modification times.

    Names inside ``root`` are taken relative to it, so moving or copying the
    datasets folder (with ``mv`` or ``cp -a``, which keep modification times)
    keeps the fingerprint; touching or rewriting a file changes it.
    """
    root = Path(root).resolve() if root is not None else None
    entries = []
    for path in paths:
        stat = os.stat(path)
        name = Path(path).resolve()
        if root is not None and name.is_relative_to(root):
            name = name.relative_to(root)
        entries.append(f"{name.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    digest = hashlib.sha1()
    for entry in sorted(entries):
        digest.update(entry.encode())
    return digest.hexdigest()[:16]


def _compact(value):
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


class FrameCache:
    """One cache entry.

    Args:
        data_dir: the datasets folder (the cache lives in its ``.tess-cache``
            sub-folder unless ``$TESS_CACHE_DIR`` names another place).
        dataset: dataset name.
        settings: dict of everything that changes the frames (T, size...).
        sources: the files the frames are decoded from.
    """

    def __init__(self, data_dir, dataset, settings, sources):
        root = os.environ.get(CACHE_DIR_ENV)
        self.root = Path(root).expanduser() if root else Path(data_dir) / CACHE_FOLDER
        self.dataset = dataset
        self.settings = {"format": FORMAT_VERSION, **settings}
        key = json.dumps(self.settings, sort_keys=True) + fingerprint_files(sources, root=data_dir)
        # Entries of one family differ only in their source files; see _remove_stale.
        self.family = dataset + "".join(f"-{k}{_compact(v)}" for k, v in sorted(settings.items()))
        self.path = self.root / f"{self.family}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    def load(self):
        """The cached arrays (memory-mapped), or ``None`` when there is no complete entry."""
        if not (self.path / "meta.json").is_file():
            return None
        try:
            return {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        except (OSError, ValueError):
            return None  # damaged entry: rebuild it

    def build(self, shapes, fill):
        """Create the entry: allocate the arrays on disk, let ``fill`` write them, rename into place.

        Args:
            shapes: ``{name: (shape, dtype)}`` for every array in ``ARRAYS``.
            fill: ``fill(arrays)`` writes the samples into the given dict of
                writable (memory-mapped) arrays.

        Returns:
            the arrays, memory-mapped read-only from the finished entry (or
            in memory when the cache folder cannot be written).
        """
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            warnings.warn(f"cannot write the frame cache in {self.root} ({error}); frames are kept in memory only")
            arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in shapes.items()}
            fill(arrays)
            return arrays
        try:
            arrays = {
                name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
                for name, (shape, dtype) in shapes.items()
            }
            fill(arrays)
            for array in arrays.values():
                array.flush()
            del arrays
            (tmp / "meta.json").write_text(json.dumps(self.settings, indent=1) + "\n")
            self._remove_stale()
            if self.path.exists():  # another process finished the same entry first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.load()

    def _remove_stale(self):
        """Drop older entries with the same settings (their source files changed)."""
        for entry in self.root.glob(f"{self.family}-*"):
            if entry != self.path and ".tmp-" not in entry.name and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
