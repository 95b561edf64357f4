"""CIFAR10 and CIFAR100 from the original python-pickle archives.

The archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) is read
as is, or its extracted folder, or the copy Keras keeps in its download cache
(see ``tess_keras.data.catalog.cifar_source``). Images stay ``uint8``
``[N, 32, 32, 3]`` in memory (150 MB for CIFAR10 rather than 600 MB as
float32); the pipeline scales and normalises them per batch.
"""

import numpy as np

from tess_keras.data import catalog
from tess_keras.data.base import DatasetError, DatasetSplits, resolve_data_dir

# Per-channel mean and standard deviation of the training images (the usual CIFAR constants).
CIFAR10_NORMALIZATION = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_NORMALIZATION = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _stack(name, batches, label_key, source):
    images = np.concatenate([np.asarray(batch["data"], dtype=np.uint8) for batch in batches])
    labels = np.concatenate([np.asarray(batch[label_key], dtype=np.int32) for batch in batches])
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"Dataset {name!r}: {source} holds images of shape {images.shape[1:]}, not 3072 bytes "
                           "(3x32x32); it is not the original python-version archive.")
    classes = 10 if name == "cifar10" else 100
    if labels.min() < 0 or labels.max() >= classes:
        raise DatasetError(f"Dataset {name!r}: {source} has labels outside 0-{classes - 1}; it is corrupt.")
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _load_cifar(name, data_dir, time_steps, normalization, cutout):
    data_dir = resolve_data_dir(data_dir)
    source = catalog.cifar_source(name, data_dir)
    train, test = catalog.read_cifar_batches(name, source)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    x_train, y_train = _stack(name, train, label_key, source)
    x_test, y_test = _stack(name, test, label_key, source)
    return DatasetSplits(
        name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=10 if name == "cifar10" else 100, time_steps=time_steps, encoding="direct",
        augmentation="cifar", normalization=normalization, cutout=cutout,
    )


def load_cifar10(data_dir=None, time_steps=6, seed=0):
    """CIFAR10, direct-encoded over T (recipe: 6); pad+crop, flip, cutout 16 when augmenting.

    Args:
        data_dir: datasets folder (the Keras cache is searched too).
        time_steps: T.
        seed: unused (the archive's train/test batches are the split).
    """
    return _load_cifar("cifar10", data_dir, time_steps, CIFAR10_NORMALIZATION, cutout=16)


def load_cifar100(data_dir=None, time_steps=6, seed=0):
    """CIFAR100 (fine labels), as ``load_cifar10`` with cutout 8."""
    return _load_cifar("cifar100", data_dir, time_steps, CIFAR100_NORMALIZATION, cutout=8)
