"""scikit-learn's 8×8 handwritten digits: the built-in, download-free dataset."""

import importlib.util
from pathlib import Path

import numpy as np

from tess_keras.data.base import DatasetSplits

TRAIN_SIZE = 1400  # fixed seeded split: 1400 train / 397 test


def split_order(count, seed=0):
    """``(train, test)`` indices: the seeded permutation's first ``TRAIN_SIZE`` and the rest."""
    order = np.random.default_rng(seed).permutation(count)
    return order[:TRAIN_SIZE], order[TRAIN_SIZE:]


def digits_labels():
    """The 1797 labels, read from scikit-learn's ``digits.csv.gz`` without importing scikit-learn
    (whose import takes seconds); falls back to ``sklearn.datasets.load_digits``."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return np.loadtxt(path, delimiter=",", usecols=[64]).astype(np.int32)
    from sklearn.datasets import load_digits as sklearn_digits

    return sklearn_digits().target.astype(np.int32)


def load_digits(time_steps=4, seed=0):
    """Digits scaled to [0, 1], shaped ``[N, 8, 8, 1]``, direct-encoded over
    ``time_steps`` by the pipeline. The split is a fixed permutation drawn
    from ``seed`` (``split_order``).

    Args:
        time_steps: T.
        seed: draws the 1400/397 train/test split.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    train, test = split_order(len(labels), seed)
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
