"""The common shape of every dataset this package loads, and where datasets live."""

import dataclasses
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "TESS_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.tess/data")
SUBSETS = ("train", "validation", "test")


class DatasetError(Exception):
    """A dataset is missing, incomplete or corrupt. The message says what to do."""


class RowView:
    """Rows ``indices`` of a (memory-mapped) array, read only when indexed.

    Carving validation out of a memory-mapped training set must not copy the
    whole set into memory, so the training and validation parts of a cached
    event dataset are views: ``view[i]``, ``view[a:b]``, ``view[index_array]``
    and ``view[rows, ...]`` read those rows; ``np.asarray(view)`` reads all of
    them.

    Args:
        base: the array (usually an ``np.memmap``).
        indices: 1-D integer array of the rows of ``base`` this view holds.
    """

    def __init__(self, base, indices):
        self.base = base
        self.indices = np.asarray(indices, np.int64)

    @property
    def shape(self):
        return (len(self.indices), *self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self):
        return self.base.ndim

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.base.dtype.itemsize

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        picked = self.indices[rows]
        if np.ndim(picked) == 0:
            out = np.asarray(self.base[int(picked)])
            return out[rest] if rest else out
        if len(picked) < 2 or np.all(picked[1:] >= picked[:-1]):
            out = np.asarray(self.base[picked])
        else:
            order = np.argsort(picked, kind="stable")  # sequential reads from the memory map
            out = np.empty((len(picked), *self.base.shape[1:]), self.base.dtype)
            out[order] = self.base[picked[order]]
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]

    def astype(self, dtype):
        return np.asarray(self, dtype=dtype)


def take_rows(array, indices):
    """Rows ``indices`` of ``array``: a ``RowView`` of a memory map, a copy of an in-memory array."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == len(array) and np.array_equal(indices, np.arange(len(array))):
        return array
    if isinstance(array, RowView):
        return RowView(array.base, array.indices[indices])
    if isinstance(array, np.memmap):
        return RowView(array, indices)
    return np.asarray(array)[indices]


@dataclasses.dataclass
class DatasetSplits:
    """Train, validation and test arrays of one dataset, ready for the ``tf.data`` pipeline.

    Loaders fill train and test; ``tess_keras.data.load_dataset`` then carves
    the validation split out of the training data (see ``tess_keras.data.split``).

    Attributes:
        name: dataset name (``digits``, ``cifar10-dvs``...).
        x_train, y_train, x_test, y_test: samples and integer labels. For
            ``encoding == "direct"`` samples are static ``[N, H, W, C]``
            images repeated over T by the pipeline; for ``"frames"`` they are
            event-count frames ``[N, T, H, W, P]`` (``uint8``, possibly
            memory-mapped from the frame cache, or a ``RowView`` of it).
        num_classes: number of classes.
        time_steps: T.
        encoding: ``"direct"`` or ``"frames"``.
        augmentation: what ``make_tf_dataset(..., augment=True)`` does to
            training samples: ``"none"``, ``"crop"`` (pad 4 + random crop,
            the same crop for every frame of a sample) or ``"cifar"`` (pad 4 +
            random crop, horizontal flip, cutout).
        normalization: ``(mean, std)`` per channel applied to ``uint8``
            images after scaling to [0, 1] (CIFAR), or ``None``.
        cutout: side of the cutout square for ``augmentation == "cifar"``.
        x_val, y_val: the validation split (0 rows when there is none;
            ``None`` given to the constructor means none).
        ids_train, ids_val, ids_test: per-sample names (file paths relative
            to the dataset folder, or ``file[index]``), or ``None`` where the
            dataset has no files (digits); used to name files in messages.
        groups_train: per-sample group of the training data (DVS Gesture: the
            user) or ``None``; validation takes whole groups.
        skipped: what was ignored while listing the files, e.g.
            ``{"non_sample_files": 3}``.
        empty: ``{"train": n, "validation": n, "test": n}`` recordings whose
            frames are all zero.
        incomplete: what was missing (classes, folders) when loaded with
            ``allow_incomplete=True``, or gaps the dataset is published with.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    time_steps: int
    encoding: str = "direct"
    augmentation: str = "none"
    normalization: tuple | None = None
    cutout: int = 0
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    ids_train: np.ndarray | None = None
    ids_val: np.ndarray | None = None
    ids_test: np.ndarray | None = None
    groups_train: np.ndarray | None = None
    skipped: dict = dataclasses.field(default_factory=dict)
    empty: dict = dataclasses.field(default_factory=dict)
    incomplete: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.x_val is None or self.y_val is None:
            self.x_val = np.zeros((0, *self.x_train.shape[1:]), self.x_train.dtype)
            self.y_val = np.zeros((0,), np.asarray(self.y_train).dtype)
            if self.ids_train is not None and self.ids_val is None:
                self.ids_val = np.zeros((0,), np.asarray(self.ids_train).dtype)

    @property
    def input_shape(self):
        """Per-step input shape ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:] if self.encoding == "direct" else self.x_train.shape[2:])

    def subset(self, subset):
        """``(x, y)`` of ``"train"``, ``"validation"`` or ``"test"``."""
        if subset == "train":
            return self.x_train, self.y_train
        if subset == "validation":
            return self.x_val, self.y_val
        if subset == "test":
            return self.x_test, self.y_test
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, not {subset!r}")

    def class_counts(self):
        """Samples per class of each split: ``{"train": [...], "validation": [...], "test": [...]}``."""
        labels = {"train": self.y_train, "validation": self.y_val, "test": self.y_test}
        return {subset: count_classes(y, self.num_classes) for subset, y in labels.items()}


def count_classes(labels, num_classes):
    """Number of samples of each class ``0..num_classes-1`` in ``labels`` (a list of ints)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    return np.bincount(labels, minlength=num_classes)[:num_classes].astype(int).tolist()


def resolve_data_dir(data_dir=None):
    """The datasets folder: ``data_dir`` if given, else ``$TESS_DATA_DIR``,
    else ``~/.tess/data``.

    Raises:
        DatasetError: the chosen path exists but is a file, not a folder.
    """
    from_env = not data_dir and bool(os.environ.get(DATA_DIR_ENV))
    chosen = Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()
    if chosen.exists() and not chosen.is_dir():
        where = f"${DATA_DIR_ENV}" if from_env else "The datasets folder (--data-dir or $TESS_DATA_DIR)"
        raise DatasetError(
            f"{where} is {chosen}, which is a file, not a folder. Point it at the folder that holds the "
            f"datasets (e.g. the folder containing NMNIST/ or CIFAR10DVS/), or unset it to use {DEFAULT_DATA_DIR}.")
    return chosen
