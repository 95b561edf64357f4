"""The common shape of every dataset this package loads, and where datasets live."""

import dataclasses
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "TESS_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.tess/data")


class DatasetError(Exception):
    """A dataset is missing, incomplete or corrupt. The message says what to do."""


@dataclasses.dataclass
class DatasetSplits:
    """Train and test arrays of one dataset, ready for the ``tf.data`` pipeline.

    Attributes:
        name: dataset name (``digits``, ``cifar10-dvs``...).
        x_train, y_train, x_test, y_test: samples and integer labels. For
            ``encoding == "direct"`` samples are static ``[N, H, W, C]``
            images repeated over T by the pipeline; for ``"frames"`` they are
            event-count frames ``[N, T, H, W, P]`` (``uint8``, possibly
            memory-mapped from the frame cache).
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

    @property
    def input_shape(self):
        """Per-step input shape ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:] if self.encoding == "direct" else self.x_train.shape[2:])


def resolve_data_dir(data_dir=None):
    """The datasets folder: ``data_dir`` if given, else ``$TESS_DATA_DIR``,
    else ``~/.tess/data``."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()
