"""Event datasets loaded from small files in their real on-disk formats,
decoded by tonic's readers, binned into frames and cached."""

import os

import numpy as np
import pytest

from test_data_writers import (  # noqa: F401  (no_network is a fixture)
    no_network, random_events, write_aedat4, write_gesture_npy, write_nmnist_bin, write_shd_h5,
)
from tess_keras import data
from tess_keras.data import catalog, events as events_module


def reference_time_bins(t, x, y, p, time_steps, size, sensor, start=None, window=None):
    """Independent frame computation: [T, H, W, P] counts, as the loaders promise."""
    t = np.asarray(t, np.int64)
    if window is None:  # T equal bins over [t_first, t_last], the last one closed: every event is in a frame
        bins = np.minimum((t - t[0]) * time_steps // (t[-1] - t[0]), time_steps - 1)
    else:
        bins = np.floor((t - start) / window).astype(np.int64)
    keep = (bins >= 0) & (bins < time_steps)
    rows = (np.asarray(y) * (size[0] / sensor[1])).astype(np.int64)
    cols = (np.asarray(x) * (size[1] / sensor[0])).astype(np.int64)
    frames = np.zeros((time_steps, size[0], size[1], 2), np.int64)
    np.add.at(frames, (bins[keep], rows[keep], cols[keep], np.asarray(p)[keep]), 1)
    return frames


@pytest.fixture
def cifar10_dvs_dir(tmp_path):
    """Two recordings per class (1 train / 1 test each); returns (root, {path: (t, x, y, p)})."""
    rng = np.random.default_rng(0)
    written = {}
    for class_name in catalog.CIFAR10_DVS_CLASSES:
        for index in (0, 1):
            path = tmp_path / "CIFAR10DVS" / class_name / f"cifar10_{class_name}_{index}.aedat4"
            events = random_events(rng, 400, 128, 128, 200_000, start_us=5_000)
            write_aedat4(path, *events)
            written[path] = events
    return tmp_path, written


def test_cifar10_dvs_frames_labels_split_and_cache(cifar10_dvs_dir, no_network, monkeypatch):
    root, written = cifar10_dvs_dir
    splits = data.load_dataset("cifar10-dvs", root, time_steps=4, size=16)
    assert splits.encoding == "frames" and splits.num_classes == 10 and splits.time_steps == 4
    assert splits.x_train.shape == (10, 4, 16, 16, 2) and splits.x_test.shape == (10, 4, 16, 16, 2)
    assert splits.x_train.dtype == np.uint8 and splits.input_shape == (16, 16, 2)
    # 90/10 per class with two files: the first (natural order) trains, the second tests.
    np.testing.assert_array_equal(splits.y_train, np.arange(10))
    np.testing.assert_array_equal(splits.y_test, np.arange(10))
    for label, class_name in enumerate(catalog.CIFAR10_DVS_CLASSES):
        for subset, index in (("train", 0), ("test", 1)):
            t, x, y, p = written[root / "CIFAR10DVS" / class_name / f"cifar10_{class_name}_{index}.aedat4"]
            expected = reference_time_bins(t, x, y, p, 4, (16, 16), (128, 128))
            np.testing.assert_array_equal(getattr(splits, f"x_{subset}")[label], expected)

    # Second load: memory-mapped from the cache, no event decoding at all.
    def no_decoding(path):
        raise AssertionError(f"{path} decoded again although the frames are cached")

    monkeypatch.setattr(events_module, "read_cifar10_dvs", no_decoding)
    cached = data.load_dataset("cifar10-dvs", root, time_steps=4, size=16)
    assert isinstance(cached.x_train, np.memmap)
    np.testing.assert_array_equal(cached.x_train, splits.x_train)
    # Another T or size is another cache entry: it must decode again.
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_dataset("cifar10-dvs", root, time_steps=5, size=16)
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_dataset("cifar10-dvs", root, time_steps=4, size=8)
    # No half-written entry was left behind by the interrupted builds.
    entries = sorted(p.name for p in (root / catalog.CACHE_FOLDER).iterdir())
    assert len(entries) == 1 and ".tmp-" not in entries[0]


def test_cache_is_rebuilt_when_a_source_file_changes(cifar10_dvs_dir, no_network):
    root, written = cifar10_dvs_dir
    before = data.load_dataset("cifar10-dvs", root, time_steps=3, size=8)
    old_entry = {p.name for p in (root / catalog.CACHE_FOLDER).iterdir()}
    path = root / "CIFAR10DVS" / "truck" / "cifar10_truck_1.aedat4"  # the truck test sample
    t, x, y, p = random_events(np.random.default_rng(7), 900, 128, 128, 100_000)
    write_aedat4(path, t, x, y, p)
    after = data.load_dataset("cifar10-dvs", root, time_steps=3, size=8)
    assert after.x_test[9].sum() == reference_time_bins(t, x, y, p, 3, (8, 8), (128, 128)).sum()
    assert after.x_test[9].sum() != before.x_test[9].sum()
    new_entry = {p.name for p in (root / catalog.CACHE_FOLDER).iterdir()}
    assert len(new_entry) == 1 and new_entry != old_entry  # the stale entry was removed


def test_dvs_gesture_clips_of_1_5_s_in_75_ms_frames(tmp_path, no_network):
    rng = np.random.default_rng(2)
    written = {}
    layout = [("ibmGestureTrain", "user01_fluorescent", 0), ("ibmGestureTrain", "user01_fluorescent", 7),
              ("ibmGestureTrain", "user02_led", 10), ("ibmGestureTest", "user24_natural", 3),
              ("ibmGestureTest", "user24_natural", 10)]
    for folder, user, label in layout:
        count = 3000
        t_ms = np.sort(rng.integers(250, 250 + 2500, count))  # 2.5 s recording, starts at 250 ms
        x, y, p = rng.integers(0, 128, count), rng.integers(0, 128, count), rng.integers(0, 2, count)
        path = tmp_path / "DVSGesture" / folder / user / f"{label}.npy"
        write_gesture_npy(path, x, y, p, t_ms)
        written[(folder, label, user)] = (t_ms * 1000, x, y, p)
    splits = data.load_dataset("dvs-gesture", tmp_path, validation_fraction=0, allow_incomplete=True)
    assert splits.num_classes == 11 and splits.time_steps == 20
    assert splits.x_train.shape == (3, 20, 32, 32, 2) and splits.x_test.shape == (2, 20, 32, 32, 2)
    np.testing.assert_array_equal(splits.y_train, [0, 7, 10])
    np.testing.assert_array_equal(splits.y_test, [3, 10])
    t, x, y, p = written[("ibmGestureTrain", 7, "user01_fluorescent")]
    expected = reference_time_bins(t, x, y, p, 20, (32, 32), (128, 128), start=t[0], window=75_000)
    np.testing.assert_array_equal(splits.x_train[1], expected)
    # Events after the first 1.5 s are not in the clip.
    assert splits.x_train[1].sum() == np.count_nonzero(t < t[0] + 1_500_000) < len(t)


def test_nmnist_bin_files_in_digit_folders(tmp_path, no_network):
    rng = np.random.default_rng(3)
    written = {}
    for folder, digits in (("Train", (0, 3, 9)), ("Test", (1, 9))):
        for digit in digits:
            t, x, y, p = random_events(rng, 600, 34, 34, 300_000)
            write_nmnist_bin(tmp_path / "NMNIST" / folder / str(digit) / "00002.bin", x, y, p, t)
            written[(folder, digit)] = (t, x, y, p)
    splits = data.load_dataset("nmnist", tmp_path, time_steps=6, allow_incomplete=True)
    assert splits.x_train.shape == (3, 6, 34, 34, 2) and splits.x_test.shape == (2, 6, 34, 34, 2)
    np.testing.assert_array_equal(splits.y_train, [0, 3, 9])
    np.testing.assert_array_equal(splits.y_test, [1, 9])
    t, x, y, p = written[("Test", 9)]
    np.testing.assert_array_equal(splits.x_test[1], reference_time_bins(t, x, y, p, 6, (34, 34), (34, 34)))


def test_shd_hdf5_channels_in_one_row(tmp_path, no_network):
    rng = np.random.default_rng(4)
    subsets = {}
    for name, count in (("shd_train.h5", 4), ("shd_test.h5", 3)):
        samples, labels = [], rng.integers(0, 20, count)
        for _ in range(count):
            n = int(rng.integers(50, 200))
            samples.append((np.sort(rng.uniform(0.0, 1.2, n)), rng.integers(0, 700, n)))
        write_shd_h5(tmp_path / "SHD" / name, samples, labels)
        subsets[name] = (samples, labels)
    splits = data.load_dataset("shd", tmp_path, time_steps=10, validation_fraction=0, allow_incomplete=True)
    assert splits.x_train.shape == (4, 10, 1, 140, 1) and splits.x_test.shape == (3, 10, 1, 140, 1)
    assert splits.input_shape == (1, 140, 1) and splits.num_classes == 20
    np.testing.assert_array_equal(splits.y_test, subsets["shd_test.h5"][1])
    # Independent check of one sample: 100 ms bins over the first second, 5 channels per column.
    times, units = subsets["shd_train.h5"][0][2]
    t_us = np.asarray(np.asarray(times, np.float16), np.float64) * 1e6
    expected = np.zeros((10, 140), np.int64)
    keep = t_us < 1e6
    np.add.at(expected, ((t_us[keep] // 100_000).astype(int), units[keep] // 5), 1)
    np.testing.assert_array_equal(splits.x_train[2][:, 0, :, 0], expected)


def test_thread_pool_decoding_matches_one_by_one(cifar10_dvs_dir, no_network):
    root, written = cifar10_dvs_dir
    splits = data.load_dataset("cifar10-dvs", root, time_steps=2, size=48)
    path = root / "CIFAR10DVS" / "cat" / "cifar10_cat_0.aedat4"
    one = events_module.to_frames(events_module.read_cifar10_dvs(path), (128, 128, 2), (48, 48), 2)
    np.testing.assert_array_equal(splits.x_train[3], one)
    assert os.path.isdir(root / catalog.CACHE_FOLDER)


def test_process_pool_decoding_matches_threads(tmp_path, no_network, monkeypatch):
    """With TESS_DATA_WORKERS, large datasets decode in spawned worker processes; the frames must be identical."""
    rng = np.random.default_rng(5)
    for folder in ("Train", "Test"):
        for digit in range(3):
            t, x, y, p = random_events(rng, 500, 34, 34, 300_000)
            write_nmnist_bin(tmp_path / "NMNIST" / folder / str(digit) / "1.bin", x, y, p, t)
    threads = data.load_dataset("nmnist", tmp_path, time_steps=5, allow_incomplete=True)
    threads_x = np.array(threads.x_train)
    monkeypatch.setattr(events_module, "PROCESS_POOL_MIN_ITEMS", 1)
    monkeypatch.setenv("TESS_DATA_WORKERS", "2")
    monkeypatch.setenv("TESS_CACHE_DIR", str(tmp_path / "other_cache"))
    processes = data.load_dataset("nmnist", tmp_path, time_steps=5, allow_incomplete=True)
    assert (tmp_path / "other_cache").is_dir()
    np.testing.assert_array_equal(processes.x_train, threads_x)
    np.testing.assert_array_equal(processes.y_train, threads.y_train)
