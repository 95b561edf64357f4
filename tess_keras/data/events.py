"""Event datasets: CIFAR10-DVS, DVS Gesture, N-MNIST and SHD.

Each recording is read with tonic's own reader (``tonic.io.read_aedat4``,
``tonic.io.read_mnist_file``, or the array layout tonic's ``DVSGesture`` and
``SHD`` classes read), spatially downsampled with ``tonic.transforms.Downsample``
and binned into T event-count frames with every event in a frame
(``tess_keras.data.binning``). The frames are stored channels-last ``[T, H, W, P]`` as ``uint8`` counts (clipped
at 255) in the frame cache (``tess_keras.data.cache``).

tonic's dataset *classes* are never instantiated: they download the dataset
whenever their own file-count check fails. The files and labels come from the published folder layouts
(``tess_keras.data.layout``) and only tonic's readers and transforms are used.

Corrupt or truncated files are not skipped: the loader stops with a
``DatasetError`` that names the file, so a damaged download can never turn
into silently wrong labels or missing samples.
"""

import concurrent.futures
import concurrent.futures.process
import functools
import logging
import multiprocessing
import os

import numpy as np

from tess_keras.data import catalog, layout
from tess_keras.data.base import DatasetError, DatasetSplits, resolve_data_dir
from tess_keras.data.binning import frame_size, to_frames  # noqa: F401  (to_frames: used by the other loaders too)
from tess_keras.data.cache import FrameCache

log = logging.getLogger(__name__)

DVS_GESTURE_CLIP_US = 1_500_000  # the recipe's 1.5 s clip (20 frames of 75 ms at T = 20)
SHD_DURATION_US = 1_000_000  # SHD digits last < 1 s; frames cover [0, 1 s)
SHD_SIZE = (1, 140)  # 700 cochlea channels summed in groups of 5


def _check_events(events, path, width, height=None):
    """Reject empty recordings and out-of-sensor addresses; sort by time if needed."""
    if len(events) == 0:
        raise DatasetError(f"{path} contains no events; the file is truncated or corrupt. Replace it with the original file.")
    bad = (events["x"] < 0) | (events["x"] >= width)
    if height is not None:
        bad |= (events["y"] < 0) | (events["y"] >= height)
    if bad.any():
        raise DatasetError(f"{path} has events outside the {width}x{height or 1} sensor; the file is corrupt "
                           "or from another dataset. Replace it with the original file.")
    polarity = np.asarray(events["p"]).astype(np.int64)
    if np.any((polarity < 0) | (polarity > 1)):
        raise DatasetError(f"{path} has polarities other than 0 and 1; the file is corrupt or from another dataset. "
                           "Replace it with the original file.")
    times = events["t"]
    if np.any(times[1:] < times[:-1]):
        events = events[np.argsort(times, kind="stable")]
    return events


# ----------------------------------------------------------------------------- readers

def read_cifar10_dvs(path):
    """One CIFAR10-DVS ``.aedat4`` recording through tonic's ``read_aedat4``."""
    from tonic.io import read_aedat4

    try:
        events = read_aedat4(str(path))
    except Exception as error:  # the aedat decoder raises plain Exceptions/OSErrors on damaged files
        raise DatasetError(f"{path} is not a readable AEDAT4 file ({error}); it is truncated or corrupt. "
                           "Replace it with the original file.") from None
    events.dtype.names = ("t", "x", "y", "p")  # as tonic's CIFAR10DVS does
    return _check_events(events, path, 128, 128)


def read_dvs_gesture(path):
    """One DVS Gesture sample: tonic's preprocessed ``[N, 4]`` array of x, y, p, t (ms)."""
    from numpy.lib import recfunctions
    from tonic.datasets import DVSGesture

    try:
        raw = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path} is not a readable .npy array ({error}); it is truncated or corrupt. "
                           "Replace it with the original file.") from None
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise DatasetError(f"{path} holds an array of shape {raw.shape}, not [N, 4] events (x, y, p, t); "
                           "it is not a DVS Gesture sample from tonic's archives.")
    raw = raw.astype(np.int64)
    raw[:, 3] *= 1000  # ms -> us, as tonic's DVSGesture does
    events = recfunctions.unstructured_to_structured(raw, DVSGesture.dtype)
    return _check_events(events, path, 128, 128)


def read_nmnist(path):
    """One N-MNIST ``.bin`` recording through tonic's ``read_mnist_file``."""
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    size = os.path.getsize(path)
    if size % 5:
        raise DatasetError(f"{path} is {size} bytes, not a whole number of 5-byte events; it is truncated or corrupt. "
                           "Replace it with the original file.")
    events = read_mnist_file(str(path), dtype=NMNIST.dtype)
    return _check_events(events, path, 34, 34)


# ----------------------------------------------------------------------------- building frames

PROCESS_POOL_MIN_ITEMS = 64  # below this, starting workers (each imports tonic) costs more than it saves
WORKERS_ENV = "TESS_DATA_WORKERS"


def _fill_parallel(out, items, convert):
    """``out[i] = convert(item)`` for every item.

    By default on a thread pool in this process. With ``$TESS_DATA_WORKERS``
    set to N > 1, jobs of ``PROCESS_POOL_MIN_ITEMS`` or more items run on N
    spawned worker processes instead: tonic's binning (``numpy.add.at``) and
    the AEDAT4 decoder run largely under the GIL, so only processes use many
    cores. Spawned (not forked) workers are safe after TensorFlow has started
    its threads but, as with any Python multiprocessing, need the main script
    to have an ``if __name__ == "__main__":`` guard; if workers cannot start,
    decoding falls back to threads. ``convert`` must be picklable (a
    module-level function or a ``functools.partial`` of one).
    """
    workers = int(os.environ.get(WORKERS_ENV) or 0)
    if workers > 1 and len(items) >= PROCESS_POOL_MIN_ITEMS:
        context = multiprocessing.get_context("spawn")
        try:
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                chunk = max(1, min(16, len(items) // (4 * workers)))
                for index, frames in enumerate(pool.map(convert, items, chunksize=chunk)):
                    out[index] = frames
            return
        except concurrent.futures.process.BrokenProcessPool as error:
            # Workers could not start (e.g. a main script without the __main__ guard, or code read from
            # stdin): decode in this process instead.
            log.warning("event decoding workers failed (%s); decoding on threads instead", error)
    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for index, frames in enumerate(pool.map(convert, items)):
            out[index] = frames


# Per-file conversions at module level, so worker processes can unpickle them.

def _cifar10_dvs_frames(path, size, time_steps):
    return to_frames(read_cifar10_dvs(path), (128, 128, 2), size, time_steps)


def _dvs_gesture_frames(path, size, time_steps, window):
    events = read_dvs_gesture(path)
    return to_frames(events, (128, 128, 2), size, time_steps, time_window=window, start_time=int(events["t"][0]))


def _nmnist_frames(path, size, time_steps):
    return to_frames(read_nmnist(path), (34, 34, 2), size, time_steps)


def _cached_frames(data_dir, name, settings, sources, train, test, convert, time_steps, size, polarities):
    """Load the frames from the cache, or decode ``train``/``test`` items into it.

    Args:
        train, test: lists of ``(item, label)``; ``convert(item)`` -> frames.
    """
    cache = FrameCache(data_dir, name, settings, sources)
    arrays = cache.load()
    if arrays is None:
        log.info("decoding %d %s recordings into %s", len(train) + len(test), name, cache.path)
        frame_shape = (time_steps, *size, polarities)
        shapes = {
            "x_train": ((len(train), *frame_shape), np.uint8), "y_train": ((len(train),), np.int32),
            "x_test": ((len(test), *frame_shape), np.uint8), "y_test": ((len(test),), np.int32),
        }

        def fill(out):
            for subset, items in (("train", train), ("test", test)):
                out[f"y_{subset}"][:] = [label for _, label in items]
                _fill_parallel(out[f"x_{subset}"], [item for item, _ in items], convert)

        arrays = cache.build(shapes, fill)
    return arrays


def _splits(name, arrays, num_classes, time_steps, listing=None, ids=None, groups=None):
    """The ``DatasetSplits`` of cached ``arrays``; ``listing`` (a ``layout.SampleList``) gives ids and counts."""
    if listing is not None and ids is None:
        ids = {"train": listing.ids("train"), "test": listing.ids("test")}
    return DatasetSplits(
        name=name, x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"],
        y_test=arrays["y_test"], num_classes=num_classes, time_steps=time_steps,
        encoding="frames", augmentation="crop" if name in ("cifar10-dvs", "dvs-gesture") else "none",
        ids_train=None if ids is None else np.asarray(ids["train"]),
        ids_test=None if ids is None else np.asarray(ids["test"]),
        groups_train=None if groups is None else np.asarray(groups),
        skipped=dict(listing.skipped) if listing is not None else {},
        incomplete=list(listing.incomplete) if listing is not None else [],
    )


def cifar10_dvs_split(samples, test_fraction=0.1):
    """The recipe's 90/10 split per class: the last 10% of each class (natural file order) is the test set.

    Args:
        samples: ``[(path, label)]`` in natural file order (``layout.cifar10_dvs_samples(...).train``).
    """
    train, test = [], []
    for label in range(len(catalog.CIFAR10_DVS_CLASSES)):
        members = [item for item in samples if item[1] == label]
        n_test = max(1, round(len(members) * test_fraction)) if len(members) > 1 else 0
        cut = len(members) - n_test
        train += members[:cut]
        test += members[cut:]
    return train, test


def load_cifar10_dvs(data_dir=None, time_steps=10, seed=0, size=48, allow_incomplete=False):
    """CIFAR10-DVS: 128x128 recordings -> T frames of ``size``, 90/10 split per class.

    Args:
        data_dir: datasets folder (see ``resolve_data_dir``).
        time_steps: T equal time bins over each recording (recipe: 10).
        seed: unused (the split is fixed by file order); kept for a uniform signature.
        size: frame side or ``(H, W)`` (recipe: 48).
        allow_incomplete: accept missing class folders (recorded in ``incomplete``).
    """
    data_dir = resolve_data_dir(data_dir)
    listing = layout.cifar10_dvs_samples(data_dir, allow_incomplete)
    listing.train, listing.test = cifar10_dvs_split(listing.train)
    size = frame_size(size)
    settings = {"T": time_steps, "size": size}
    convert = functools.partial(_cifar10_dvs_frames, size=size, time_steps=time_steps)
    arrays = _cached_frames(data_dir, "cifar10-dvs", settings, listing.files(), listing.train, listing.test,
                            convert, time_steps, size, 2)
    return _splits("cifar10-dvs", arrays, 10, time_steps, listing)


def load_dvs_gesture(data_dir=None, time_steps=20, seed=0, size=32, clip_us=DVS_GESTURE_CLIP_US,
                     allow_incomplete=False):
    """DVS Gesture: the first ``clip_us`` of each sample in T frames of ``clip_us / T``.

    Args:
        data_dir: datasets folder.
        time_steps: T (recipe: 20 frames of 75 ms).
        seed: unused (tonic's train/test folders are the split).
        size: frame side or ``(H, W)`` (recipe: 32).
        clip_us: clip length in microseconds (recipe: 1.5 s).
        allow_incomplete: accept missing gestures (recorded in ``incomplete``).
    """
    data_dir = resolve_data_dir(data_dir)
    listing = layout.dvs_gesture_samples(data_dir, allow_incomplete)
    size = frame_size(size)
    settings = {"T": time_steps, "size": size, "clip_us": clip_us}
    convert = functools.partial(_dvs_gesture_frames, size=size, time_steps=time_steps, window=clip_us / time_steps)
    arrays = _cached_frames(data_dir, "dvs-gesture", settings, listing.files(), listing.train, listing.test,
                            convert, time_steps, size, 2)
    return _splits("dvs-gesture", arrays, catalog.DVS_GESTURE_CLASSES, time_steps, listing,
                   groups=listing.groups_train)


def load_nmnist(data_dir=None, time_steps=10, seed=0, size=34, allow_incomplete=False):
    """N-MNIST: each 300 ms recording (three saccades) in T equal time bins, 34x34x2.

    Args:
        data_dir: datasets folder.
        time_steps: T (default 10: about 30 ms per bin over the three saccades).
        seed: unused (the Train/Test folders are the split).
        size: frame side or ``(H, W)`` (default: the 34x34 sensor).
        allow_incomplete: accept missing digit folders (recorded in ``incomplete``).
    """
    data_dir = resolve_data_dir(data_dir)
    listing = layout.nmnist_samples(data_dir, allow_incomplete)
    size = frame_size(size)
    convert = functools.partial(_nmnist_frames, size=size, time_steps=time_steps)
    arrays = _cached_frames(data_dir, "nmnist", {"T": time_steps, "size": size}, listing.files(),
                            listing.train, listing.test, convert, time_steps, size, 2)
    return _splits("nmnist", arrays, 10, time_steps, listing)


def _read_shd(path):
    """All SHD samples of one HDF5 file as tonic event arrays (as tonic's ``SHD`` builds them)."""
    import h5py
    from tonic.datasets.hsd import HSD
    from tonic.io import make_structured_array

    try:
        with h5py.File(path, "r") as handle:
            times = handle["spikes/times"][:]
            units = handle["spikes/units"][:]
            labels = handle["labels"][:].astype(np.int32)
    except (OSError, KeyError, ValueError) as error:
        raise DatasetError(f"{path} is not a readable SHD HDF5 file with spikes/times, spikes/units and labels "
                           f"({error}); it is truncated or corrupt. Replace it with the original file.") from None
    if not (len(times) == len(units) == len(labels)):
        raise DatasetError(f"{path}: spikes/times, spikes/units and labels have different lengths; the file is corrupt.")
    if len(labels) and (labels.min() < 0 or labels.max() >= 20):
        raise DatasetError(f"{path}: labels outside 0-19; the file is corrupt or not SHD.")
    samples = []
    for index, (sample_times, sample_units) in enumerate(zip(times, units)):
        if len(sample_times) != len(sample_units):
            raise DatasetError(f"{path}: sample {index} has {len(sample_times)} spike times but "
                               f"{len(sample_units)} units; the file is corrupt.")
        events = make_structured_array(sample_times.astype(np.float64) * 1e6, sample_units, 1, dtype=HSD.dtype)
        samples.append(_check_events(events, f"{path} (sample {index})", 700))
    return samples, labels


def load_shd(data_dir=None, time_steps=20, seed=0, size=SHD_SIZE):
    """Spiking Heidelberg Digits: 700 channels summed to ``size[1]``, T bins over the first second.

    Frames are ``[T, 1, W, 1]``: one row of W frequency channels, one polarity.

    Args:
        data_dir: datasets folder.
        time_steps: T (default 20: 50 ms bins).
        seed: unused (shd_train.h5 / shd_test.h5 are the split).
        size: ``(1, W)`` frame size (default ``(1, 140)``).
    """
    data_dir = resolve_data_dir(data_dir)
    files = catalog.shd_files(data_dir)
    size = frame_size(size)
    if size[0] != 1:
        raise DatasetError(f"SHD frames are one row of channels; use a size of (1, W), not {size}.")
    window = SHD_DURATION_US / time_steps
    cache = FrameCache(data_dir, "shd", {"T": time_steps, "size": size}, list(files.values()))
    arrays = cache.load()
    if arrays is None:
        decoded = {subset: _read_shd(path) for subset, path in files.items()}
        frame_shape = (time_steps, *size, 1)
        shapes = {}
        for subset, (samples, labels) in decoded.items():
            shapes[f"x_{subset}"] = ((len(samples), *frame_shape), np.uint8)
            shapes[f"y_{subset}"] = ((len(samples),), np.int32)

        convert = functools.partial(to_frames, sensor_size=(700, 1, 1), size=size, time_steps=time_steps,
                                    time_window=window, start_time=0)
        def fill(out):
            for subset, (samples, labels) in decoded.items():
                out[f"y_{subset}"][:] = labels
                _fill_parallel(out[f"x_{subset}"], samples, convert)

        arrays = cache.build(shapes, fill)
    ids = {subset: [f"SHD/{files[subset].name}[{index}]" for index in range(len(arrays[f"y_{subset}"]))]
           for subset in ("train", "test")}
    return _splits("shd", arrays, 20, time_steps, ids=ids)
