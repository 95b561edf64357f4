"""scikit-learn's 8×8 handwritten digits: the built-in, download-free dataset."""

import numpy as np

from tess_keras.data.base import DatasetSplits

TRAIN_SIZE = 1400  # fixed seeded split: 1400 train / 397 test


def digits_split(seed=0):
    """``(labels, train, test)``: the 1797 labels and the seeded train/test indices (no images decoded)."""
    from sklearn.datasets import load_digits as sklearn_digits

    labels = sklearn_digits().target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    return labels, order[:TRAIN_SIZE], order[TRAIN_SIZE:]


def load_digits(time_steps=4, seed=0):
    """Digits scaled to [0, 1], shaped ``[N, 8, 8, 1]``, direct-encoded over
    ``time_steps`` by the pipeline. The split is a fixed permutation drawn
    from ``seed`` (``digits_split``).

    Args:
        time_steps: T.
        seed: draws the 1400/397 train/test split.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    images = (sklearn_digits().images / 16.0).astype(np.float32)[..., None]
    labels, train, test = digits_split(seed)
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
