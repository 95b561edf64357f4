"""scikit-learn's 8×8 handwritten digits: the built-in, download-free dataset."""

import numpy as np

from tess_keras.data.base import DatasetSplits

TRAIN_SIZE = 1400  # fixed seeded split: 1400 train / 397 test


def load_digits(time_steps=4, seed=0):
    """Digits scaled to [0, 1], shaped ``[N, 8, 8, 1]``, direct-encoded over
    ``time_steps`` by the pipeline. The split is a fixed permutation drawn
    from ``seed``."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[:TRAIN_SIZE], order[TRAIN_SIZE:]
    return DatasetSplits(
        name="digits",
        x_train=images[train],
        y_train=labels[train],
        x_test=images[test],
        y_test=labels[test],
        num_classes=10,
        time_steps=time_steps,
        encoding="direct",
    )
