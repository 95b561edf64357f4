"""The validation split, the stratified limits, empty recordings, every event in a frame,
and the frame cache surviving a moved datasets folder."""

import os
import shutil

import numpy as np
import pytest

from test_data_layout import gesture_tree, nmnist_tree
from test_data_writers import no_network, random_events, write_aedat4, write_shd_h5  # noqa: F401
from tess_keras import data
from tess_keras.data import binning, catalog, split
from tess_keras.data import events as events_module


# ----------------------------------------------------------------------------- validation

def test_validation_is_seeded_stratified_and_disjoint():
    labels = np.repeat(np.arange(5), [40, 30, 20, 10, 3])
    train, val = split.validation_indices(labels, 0.1, seed=3)
    assert np.intersect1d(train, val).size == 0 and np.array_equal(np.union1d(train, val), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=5), [4, 3, 2, 1, 1])  # round(0.1 n), >= 1
    again, _ = split.validation_indices(labels, 0.1, seed=3)
    other, _ = split.validation_indices(labels, 0.1, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    train, val = split.validation_indices(labels, 0.0)
    assert len(val) == 0 and len(train) == len(labels)


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5, "a tenth"])
def test_invalid_fraction_is_a_dataset_error(fraction):
    with pytest.raises(data.DatasetError, match="validation fraction must be at least 0 and below 1"):
        data.load_dataset("digits", validation_fraction=fraction)


def test_digits_train_validation_test():
    splits = data.load_dataset("digits")
    assert data.INFO["digits"].validation_fraction == 0.1
    counts = splits.class_counts()
    assert set(counts) == {"train", "validation", "test"} and all(len(c) == 10 for c in counts.values())
    assert sum(counts["train"]) + sum(counts["validation"]) == 1400 and sum(counts["test"]) == 397
    assert all(c > 0 for c in counts["validation"])
    whole = data.load_dataset("digits", validation_fraction=0)
    assert whole.x_val.shape == (0, 8, 8, 1) and whole.y_val.shape == (0,)
    # Validation rows are training rows: each validation image is one of the full training set's, none a test image.
    full = {row.tobytes() for row in whole.x_train}
    assert all(row.tobytes() in full for row in splits.x_val)
    assert not {row.tobytes() for row in splits.x_val} & {row.tobytes() for row in splits.x_train}


def test_dvs_gesture_validation_takes_whole_users(tmp_path, no_network):
    gesture_tree(tmp_path, users_train=tuple(range(1, 11)))
    splits = data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, validation_fraction=0.2)
    user = lambda ids: {name.split("/")[2].split("_")[0] for name in ids}  # noqa: E731
    assert len(user(splits.ids_val)) == 2 and len(user(splits.ids_train)) == 8
    assert not user(splits.ids_val) & user(splits.ids_train)
    assert splits.class_counts()["validation"] == [2] * 11 and splits.class_counts()["train"] == [8] * 11
    assert not set(splits.ids_val) & set(splits.ids_test)


def test_cifar10_dvs_keeps_the_90_10_test_split_and_validates_on_the_90(tmp_path, no_network):
    rng = np.random.default_rng(4)
    for name in catalog.CIFAR10_DVS_CLASSES:
        for index in range(10):
            write_aedat4(tmp_path / "CIFAR10DVS" / name / f"{name}_{index}.aedat4",
                         *random_events(rng, 20, 128, 128, 5000))
    splits = data.load_dataset("cifar10-dvs", tmp_path, time_steps=2, size=8)
    counts = splits.class_counts()
    assert counts == {"train": [8] * 10, "validation": [1] * 10, "test": [1] * 10}
    assert sorted(splits.ids_test) == sorted(f"CIFAR10DVS/{n}/{n}_9.aedat4" for n in catalog.CIFAR10_DVS_CLASSES)
    assert not set(splits.ids_val) & set(splits.ids_test) and not set(splits.ids_val) & set(splits.ids_train)
    # Validation and training rows of the memory-mapped cache are read on demand, not copied.
    assert isinstance(splits.x_train, data.base.RowView) and isinstance(splits.x_test, np.memmap)
    batches = list(data.make_tf_dataset(splits, "validation", 4))
    x = np.concatenate([b[0].numpy() for b in batches])
    np.testing.assert_array_equal(x, np.asarray(splits.x_val, np.float32))
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), splits.y_val)
    with pytest.raises(ValueError, match="subset must be one of train, validation, test"):
        data.make_tf_dataset(splits, "val", 4)


# ----------------------------------------------------------------------------- limits

def test_limit_train_is_stratified_and_seeded():
    splits = data.load_dataset("digits", limit_train=20, limit_test=15)
    counts = splits.class_counts()
    assert counts["train"] == [2] * 10  # every class present
    assert sum(counts["validation"]) == 15 and sum(counts["test"]) == 15 and min(counts["test"]) >= 1
    assert len(splits.x_train) == 20 and len(splits.x_val) == 15 and len(splits.x_test) == 15
    same = data.load_dataset("digits", limit_train=20)
    other = data.load_dataset("digits", limit_train=20, seed=1)
    np.testing.assert_array_equal(same.x_train, splits.x_train)
    assert not np.array_equal(other.x_train, splits.x_train)
    few = data.load_dataset("digits", limit_train=4)
    assert sum(few.class_counts()["train"]) == 4 and max(few.class_counts()["train"]) == 1


def test_limit_train_on_class_sorted_event_data(tmp_path, no_network):
    nmnist_tree(tmp_path, train_per_class=5)
    splits = data.load_dataset("nmnist", tmp_path, time_steps=2, limit_train=20, limit_test=10)
    assert splits.class_counts()["train"] == [2] * 10 and splits.class_counts()["test"] == [1] * 10


# ----------------------------------------------------------------------------- every event in a frame

def test_every_event_lands_in_a_frame():
    rng = np.random.default_rng(0)
    events = np.zeros(500, [("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    events["t"] = np.sort(rng.integers(1000, 90_000, 500))
    events["x"], events["y"], events["p"] = rng.integers(0, 34, 500), rng.integers(0, 34, 500), rng.integers(0, 2, 500)
    for steps in (1, 3, 7, 10):
        for size in ((34, 34), (17, 17)):
            frames = binning.to_frames(events, (34, 34, 2), size, steps)
            assert frames.sum() == len(events)
            # The last event is in the last frame (tonic's ToFrame(n_time_bins) drops it).
            last = events[-1]
            scale = size[0] / 34
            assert frames[-1, int(last["y"] * scale), int(last["x"] * scale), int(last["p"])] >= 1
    same_time = events.copy()
    same_time["t"] = 5000
    assert binning.to_frames(same_time, (34, 34, 2), (34, 34), 4)[0].sum() == len(events)
    # Fixed windows clip on purpose: only events in [start, start + T * window) count.
    clipped = binning.to_frames(events, (34, 34, 2), (34, 34), 4, time_window=10_000, start_time=1000)
    assert clipped.sum() == np.count_nonzero(events["t"] < 41_000)


def test_nmnist_frames_hold_every_event(tmp_path, no_network):
    nmnist_tree(tmp_path)
    splits = data.load_dataset("nmnist", tmp_path, time_steps=5, validation_fraction=0)
    assert splits.x_train.reshape(20, -1).sum(axis=1).tolist() == [40] * 20  # 40 events per written recording


# ----------------------------------------------------------------------------- empty recordings

def _shd_tree(root, per_class, empty=(), wrong_unit=False):
    rng = np.random.default_rng(5)
    for name, count in (("shd_train.h5", per_class), ("shd_test.h5", 1)):
        samples, labels = [], np.repeat(np.arange(20), count)
        for index in range(len(labels)):
            times = np.sort(rng.uniform(0.0, 0.9, 12))
            if name == "shd_train.h5" and (index in empty or wrong_unit):
                times = times * 1000 + 5  # milliseconds written as seconds: every spike after the first second
            samples.append((times, rng.integers(0, 700, 12)))
        write_shd_h5(root / "SHD" / name, samples, labels)


def test_empty_recordings_are_counted(tmp_path, no_network):
    _shd_tree(tmp_path, per_class=5, empty=(17,))  # 1 of 100 training recordings: 1 %, allowed
    splits = data.load_dataset("shd", tmp_path, time_steps=4)
    assert splits.empty["train"] + splits.empty["validation"] == 1 and splits.empty["test"] == 0


def test_more_than_one_percent_empty_is_an_error_naming_the_files(tmp_path, no_network):
    _shd_tree(tmp_path, per_class=5, empty=(17, 60))
    with pytest.raises(data.DatasetError) as caught:
        data.load_dataset("shd", tmp_path, time_steps=4, validation_fraction=0)
    message = str(caught.value)
    assert "2 of 100 train recordings (2.0 %) bin to all-zero frames" in message
    assert "SHD/shd_train.h5[17], SHD/shd_train.h5[60]" in message and "another unit" in message


# ----------------------------------------------------------------------------- the frame cache

def test_cache_survives_moving_the_data_dir_and_is_rebuilt_after_a_touch(tmp_path, no_network, monkeypatch):
    first = tmp_path / "first"
    nmnist_tree(first)
    before = data.load_dataset("nmnist", first, time_steps=3)
    decoded = []
    real_read = events_module.read_nmnist
    monkeypatch.setattr(events_module, "read_nmnist", lambda path: decoded.append(path) or real_read(path))
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    after = data.load_dataset("nmnist", moved, time_steps=3)
    assert decoded == [] and isinstance(after.x_test, np.memmap)  # the cache was reused, nothing decoded
    np.testing.assert_array_equal(np.asarray(after.x_train), np.asarray(before.x_train))
    touched = moved / "NMNIST" / "Test" / "5" / "00000.bin"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    data.load_dataset("nmnist", moved, time_steps=3)
    assert len(decoded) == 30  # rebuilt: every recording decoded again
    assert len(list((moved / catalog.CACHE_FOLDER).iterdir())) == 1  # the stale entry was removed


def test_row_view_reads_the_rows_it_holds(tmp_path):
    base = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(12, 3, 2))
    base[:] = np.arange(72, dtype=np.uint8).reshape(12, 3, 2)
    base = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.array([9, 2, 5, 7, 0])
    view = data.base.RowView(base, rows)
    expected = np.asarray(base)[rows]
    assert view.shape == (5, 3, 2) and len(view) == 5 and view.dtype == np.uint8 and view.nbytes == 30
    np.testing.assert_array_equal(view[1], expected[1])
    np.testing.assert_array_equal(view[1:4], expected[1:4])
    np.testing.assert_array_equal(view[np.array([4, 0, 2])], expected[[4, 0, 2]])  # unsorted rows, in the order asked
    np.testing.assert_array_equal(view[:, 1], expected[:, 1])
    np.testing.assert_array_equal(np.asarray(view), expected)
    assert view.astype(np.float32).dtype == np.float32
    sub = data.base.take_rows(view, [3, 1])
    np.testing.assert_array_equal(np.asarray(sub), expected[[3, 1]])
    assert data.base.take_rows(base, np.arange(12)) is base
