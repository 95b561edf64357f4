"""The common shape of every dataset this package loads."""

import dataclasses

import numpy as np


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
            event frames ``[N, T, H, W, P]``.
        num_classes: number of classes.
        time_steps: T.
        encoding: ``"direct"`` or ``"frames"``.
        recipe: per-dataset training defaults (batch size, alpha_post...).
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

    @property
    def input_shape(self):
        """Per-step input shape ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:] if self.encoding == "direct" else self.x_train.shape[2:])
