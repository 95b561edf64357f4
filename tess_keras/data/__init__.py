"""Datasets: built-in digits and digits-dvs, and the paper's event/image datasets.

Every loader returns a ``DatasetSplits``; ``make_tf_dataset`` turns one subset
into a ``tf.data`` pipeline. Datasets are read from a local folder only
(``--data-dir``, ``$TESS_DATA_DIR`` or ``~/.tess/data``); nothing is ever
downloaded. ``catalog.INFO`` describes each dataset's layout and source and
``catalog.scan`` checks whether it is present.
"""

import inspect

from tess_keras.data.base import DATA_DIR_ENV, DatasetError, DatasetSplits, resolve_data_dir
from tess_keras.data.catalog import INFO, DatasetInfo, DatasetStatus, scan
from tess_keras.data.cifar import load_cifar10, load_cifar100
from tess_keras.data.digits import load_digits
from tess_keras.data.digits_dvs import load_digits_dvs
from tess_keras.data.events import load_cifar10_dvs, load_dvs_gesture, load_nmnist, load_shd
from tess_keras.data.pipeline import make_tf_dataset

LOADERS = {
    "digits": load_digits,
    "digits-dvs": load_digits_dvs,
    "cifar10-dvs": load_cifar10_dvs,
    "dvs-gesture": load_dvs_gesture,
    "nmnist": load_nmnist,
    "shd": load_shd,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load_dataset(name, data_dir=None, time_steps=None, seed=0, **options):
    """Load a dataset by name into a ``DatasetSplits``.

    Args:
        name: one of ``LOADERS``.
        data_dir: datasets folder; ``None`` uses ``$TESS_DATA_DIR`` or ``~/.tess/data``.
        time_steps: T; ``None`` or 0 uses the dataset's default (``INFO[name].time_steps``).
        seed: split/generation seed where the dataset has one.
        **options: loader-specific settings, e.g. ``size=32`` for event datasets.
    """
    if name not in LOADERS:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(LOADERS)}.")
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
    return loader(**kwargs)


__all__ = [
    "DATA_DIR_ENV", "DatasetError", "DatasetInfo", "DatasetSplits", "DatasetStatus", "INFO", "LOADERS",
    "load_cifar10", "load_cifar10_dvs", "load_cifar100", "load_dataset", "load_digits", "load_digits_dvs",
    "load_dvs_gesture", "load_nmnist", "load_shd", "make_tf_dataset", "resolve_data_dir", "scan",
]
