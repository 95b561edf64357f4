"""Datasets: built-in digits and digits-dvs, and the paper's event/image datasets.

Every loader returns a ``DatasetSplits`` of train and test; ``load_dataset``
adds the validation split (``tess_keras.data.split``) and ``make_tf_dataset``
turns one subset into a ``tf.data`` pipeline. Datasets are read from a local folder only
(``--data-dir``, ``$TESS_DATA_DIR`` or ``~/.tess/data``); nothing is ever
downloaded. ``catalog.INFO`` describes each dataset's layout and source and
``catalog.scan`` checks whether it is present; ``counts.report`` counts the
train / validation / test samples a run would use from the file lists alone.
"""

import inspect

from tess_keras.data.base import DATA_DIR_ENV, SUBSETS, DatasetError, DatasetSplits, resolve_data_dir
from tess_keras.data.catalog import INFO, DatasetInfo, DatasetStatus, scan
from tess_keras.data.cifar import load_cifar10, load_cifar100
from tess_keras.data.digits import load_digits
from tess_keras.data.digits_dvs import load_digits_dvs
from tess_keras.data.events import load_cifar10_dvs, load_dvs_gesture, load_nmnist, load_shd
from tess_keras.data.mnist import load_mnist, load_mnist_dvs
from tess_keras.data.pipeline import make_tf_dataset
from tess_keras.data.split import check_fraction, finalize

LOADERS = {
    "digits": load_digits,
    "digits-dvs": load_digits_dvs,
    "mnist": load_mnist,
    "mnist-dvs": load_mnist_dvs,
    "cifar10-dvs": load_cifar10_dvs,
    "dvs-gesture": load_dvs_gesture,
    "nmnist": load_nmnist,
    "shd": load_shd,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load_dataset(name, data_dir=None, time_steps=None, seed=0, validation_fraction=None, allow_incomplete=False,
                 limit_train=0, limit_test=0, **options):
    """Load a dataset by name into train / validation / test ``DatasetSplits``.

    The loader gives train and test; the validation split is carved out of
    the training data (seeded, stratified per class; DVS Gesture by user),
    then the limits draw seeded, stratified subsets (``tess_keras.data.split``).

    Args:
        name: one of ``LOADERS``.
        data_dir: datasets folder; ``None`` uses ``$TESS_DATA_DIR`` or ``~/.tess/data``.
        time_steps: T; ``None`` or 0 uses the dataset's default (``INFO[name].time_steps``).
        seed: split/generation seed where the dataset has one, and the seed
            of the validation draw and of the limited subsets.
        validation_fraction: share of the training data held out for
            validation, ``0 <= f < 1``; ``None`` uses ``INFO[name].validation_fraction``;
            0 gives an empty validation split.
        allow_incomplete: proceed when classes (folders, files) are missing,
            recording what is missing in ``splits.incomplete``; otherwise a
            missing class is a ``DatasetError``.
        limit_train: at most this many training samples (0: all), stratified.
        limit_test: at most this many validation samples and test samples, each (0: all).
        **options: loader-specific settings, e.g. ``size=32`` for event datasets.

    Raises:
        DatasetError: unknown dataset or option, invalid fraction, missing,
            incomplete or corrupt files, too many empty recordings.
    """
    if name not in LOADERS:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(LOADERS)}.")
    fraction = check_fraction(INFO[name].validation_fraction if validation_fraction is None else validation_fraction)
    loader = LOADERS[name]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"Dataset {name!r} has no option {', '.join(unknown)}.")
    kwargs = {"seed": seed, **options}
    if time_steps:
        kwargs["time_steps"] = time_steps
    if "data_dir" in accepted:
        kwargs["data_dir"] = data_dir
    if "allow_incomplete" in accepted:
        kwargs["allow_incomplete"] = allow_incomplete
    splits = loader(**kwargs)
    return finalize(splits, INFO[name].num_classes, fraction, seed=seed, allow_incomplete=allow_incomplete,
                    limit_train=int(limit_train or 0), limit_test=int(limit_test or 0))


__all__ = [
    "DATA_DIR_ENV", "DatasetError", "DatasetInfo", "DatasetSplits", "DatasetStatus", "INFO", "LOADERS",
    "load_cifar10", "load_cifar10_dvs", "load_cifar100", "load_dataset", "load_digits", "load_digits_dvs",
    "load_dvs_gesture", "load_mnist", "load_mnist_dvs", "load_nmnist", "load_shd", "make_tf_dataset",
    "resolve_data_dir", "scan", "SUBSETS",
]
