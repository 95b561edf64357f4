"""Datasets: built-in digits and the paper's event/image datasets."""

from tess_keras.data.base import DatasetError, DatasetSplits
from tess_keras.data.digits import load_digits
from tess_keras.data.pipeline import make_tf_dataset

LOADERS = {"digits": load_digits}


def load_dataset(name, data_dir=None, time_steps=None, seed=0):
    """Load a dataset by name into a ``DatasetSplits``."""
    if name not in LOADERS:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(sorted(LOADERS))}.")
    kwargs = {"seed": seed}
    if time_steps:
        kwargs["time_steps"] = time_steps
    return LOADERS[name](**kwargs)


__all__ = ["DatasetError", "DatasetSplits", "LOADERS", "load_dataset", "load_digits", "make_tf_dataset"]
