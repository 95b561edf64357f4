"""Labels only from the published layouts, and completeness: small datasets written
in the real on-disk formats with the mistakes users make (wrong folder names,
nested copies, junk files, deleted classes)."""

import numpy as np
import pytest

from test_data_writers import (  # noqa: F401  (no_network is a fixture)
    no_network, random_events, write_aedat4, write_gesture_npy, write_nmnist_bin, write_shd_h5,
)
from tess_keras import data
from tess_keras.data import catalog


def nmnist_tree(root, train_per_class=2, test_per_class=1, seed=0):
    """A complete N-MNIST: every digit in Train and Test."""
    rng = np.random.default_rng(seed)
    for folder, count in (("Train", train_per_class), ("Test", test_per_class)):
        for digit in range(10):
            for index in range(count):
                t, x, y, p = random_events(rng, 40, 34, 34, 300_000)
                write_nmnist_bin(root / "NMNIST" / folder / str(digit) / f"{index:05d}.bin", x, y, p, t)
    return root / "NMNIST"


def gesture_tree(root, users_train=(1, 2, 3, 4, 5, 6), users_test=(24, 25), seed=0):
    """DVS Gesture with every trial folder holding all 11 gestures."""
    rng = np.random.default_rng(seed)
    for folder, users in (("ibmGestureTrain", users_train), ("ibmGestureTest", users_test)):
        for user in users:
            for label in range(11):
                t = np.sort(rng.integers(0, 1600, 30))
                write_gesture_npy(root / "DVSGesture" / folder / f"user{user:02d}_led" / f"{label}.npy",
                                  rng.integers(0, 128, 30), rng.integers(0, 128, 30), rng.integers(0, 2, 30), t)
    return root / "DVSGesture"


@pytest.mark.parametrize("folder", ["12", "01", "digits"])
def test_nmnist_class_folders_must_be_exactly_0_to_9(tmp_path, folder, no_network):
    base = nmnist_tree(tmp_path)
    bad = base / "Train" / folder
    write_nmnist_bin(bad / "00000.bin", [1], [2], [0], [10])
    with pytest.raises(data.DatasetError, match=f"{bad} is not a class folder.*named exactly 0, 1, 2"):
        data.load_dataset("nmnist", tmp_path, time_steps=2)


def test_nested_copy_is_an_error_naming_it_not_counted_twice(tmp_path, no_network):
    base = nmnist_tree(tmp_path)
    nested = base / "Train" / "3" / "3"
    write_nmnist_bin(nested / "00000.bin", [1], [2], [0], [10])
    with pytest.raises(data.DatasetError, match=f"{nested} is a folder inside the class folder"):
        data.load_dataset("nmnist", tmp_path, time_steps=2)
    # CIFAR10-DVS: dog/dog/ (what unzipping dog.zip inside dog/ gives) is refused the same way.
    rng = np.random.default_rng(1)
    for name in catalog.CIFAR10_DVS_CLASSES:
        write_aedat4(tmp_path / "CIFAR10DVS" / name / f"{name}_0.aedat4", *random_events(rng, 30, 128, 128, 9000))
    write_aedat4(tmp_path / "CIFAR10DVS" / "dog" / "dog" / "dog_0.aedat4", *random_events(rng, 30, 128, 128, 9000))
    with pytest.raises(data.DatasetError, match="CIFAR10DVS/dog/dog is a folder inside the class folder"):
        data.load_dataset("cifar10-dvs", tmp_path, time_steps=2, size=8)
    # An unknown folder next to the class folders (a double-extracted CIFAR10DVS/CIFAR10DVS) is refused too.
    (tmp_path / "CIFAR10DVS" / "dog" / "dog" / "dog_0.aedat4").unlink()
    (tmp_path / "CIFAR10DVS" / "dog" / "dog").rmdir()
    (tmp_path / "CIFAR10DVS" / "CIFAR10DVS" / "dog").mkdir(parents=True)
    with pytest.raises(data.DatasetError, match="CIFAR10DVS/CIFAR10DVS is not a class folder"):
        data.load_dataset("cifar10-dvs", tmp_path, time_steps=2, size=8)


def test_non_sample_files_are_ignored_and_counted(tmp_path, no_network):
    base = nmnist_tree(tmp_path)
    (base / "Train" / "4" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (base / "Train" / "4" / "notes.txt").write_text("recorded on a Tuesday\n")
    (base / "Test" / "README").write_text("N-MNIST test set\n")
    (base / "Test" / "__MACOSX").mkdir()
    splits = data.load_dataset("nmnist", tmp_path, time_steps=2, validation_fraction=0)
    assert splits.skipped == {"non_sample_files": 3, "ignored_folders": 1}
    assert splits.class_counts()["train"] == [2] * 10 and splits.class_counts()["test"] == [1] * 10
    # A sample file outside any class folder has no label: an error, not a guess.
    write_nmnist_bin(base / "Train" / "stray.bin", [1], [2], [0], [10])
    with pytest.raises(data.DatasetError, match="stray.bin is a sample outside any class folder"):
        data.load_dataset("nmnist", tmp_path, time_steps=2)


def test_deleted_class_is_an_error_and_allow_incomplete_records_it(tmp_path, no_network):
    base = nmnist_tree(tmp_path)
    for path in (base / "Test" / "7").iterdir():
        path.unlink()
    (base / "Test" / "7").rmdir()
    with pytest.raises(data.DatasetError) as caught:
        data.load_dataset("nmnist", tmp_path, time_steps=2)
    message = str(caught.value)
    assert "class(es) 7 under" in message and str(base / "Test") in message
    assert catalog.INFO["nmnist"].layout.replace("DATA_DIR", str(tmp_path)) in message  # the expected layout
    assert "--allow-incomplete" in message and "\n" not in message
    splits = data.load_dataset("nmnist", tmp_path, time_steps=2, allow_incomplete=True)
    assert splits.incomplete == ["NMNIST/Test/7/: no .bin files"]
    assert splits.class_counts()["test"][7] == 0 and sum(splits.class_counts()["test"]) == 9


def test_cifar10_dvs_missing_class_folder(tmp_path, no_network):
    rng = np.random.default_rng(2)
    for name in catalog.CIFAR10_DVS_CLASSES[:-1]:  # no truck
        for index in range(2):
            write_aedat4(tmp_path / "CIFAR10DVS" / name / f"{name}_{index}.aedat4",
                         *random_events(rng, 30, 128, 128, 9000))
    with pytest.raises(data.DatasetError, match="no .aedat4 files for class\\(es\\) truck under"):
        data.load_dataset("cifar10-dvs", tmp_path, time_steps=2, size=8)
    splits = data.load_dataset("cifar10-dvs", tmp_path, time_steps=2, size=8, allow_incomplete=True)
    assert splits.incomplete == ["CIFAR10DVS/truck/: no .aedat4 files"]
    assert splits.class_counts()["train"][9] == 0 and splits.class_counts()["test"] == [1] * 9 + [0]


def test_dvs_gesture_layout_rules(tmp_path, no_network):
    base = gesture_tree(tmp_path)
    (base / "ibmGestureTrain" / "user03_led" / "notes.txt").write_text("x")
    splits = data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, validation_fraction=0)
    assert splits.skipped == {"non_sample_files": 1} and splits.incomplete == []
    assert splits.class_counts()["train"] == [6] * 11 and splits.class_counts()["test"] == [2] * 11
    # One missing label file is how tonic's archives are published (1341 of 1342): accepted and recorded.
    (base / "ibmGestureTrain" / "user02_led" / "8.npy").unlink()
    splits = data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, validation_fraction=0)
    assert splits.incomplete == ["DVSGesture/ibmGestureTrain/user02_led/8.npy missing (as published)"]
    # A second one is a deleted file: an error naming them, unless allow_incomplete.
    (base / "ibmGestureTest" / "user25_led" / "3.npy").unlink()
    with pytest.raises(data.DatasetError, match="2 trial folder label file.*user02_led/8.npy.*user25_led/3.npy"):
        data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8)
    splits = data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, allow_incomplete=True)
    assert len(splits.incomplete) == 2
    # A gesture absent from a whole split is named.
    for user in (24, 25):
        (base / "ibmGestureTest" / f"user{user}_led" / "5.npy").unlink(missing_ok=True)
    with pytest.raises(data.DatasetError, match="no sample of gesture 5 in ibmGestureTest"):
        data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8)
    # A sample outside any trial folder has no user: refused.
    write_gesture_npy(base / "ibmGestureTrain" / "3.npy", [1], [1], [1], [5])
    with pytest.raises(data.DatasetError, match="ibmGestureTrain/3.npy lies outside any userNN_<lighting> folder"):
        data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, allow_incomplete=True)
    (base / "ibmGestureTrain" / "3.npy").unlink()
    # An unknown folder among the trial folders is refused.
    (base / "ibmGestureTrain" / "backup").mkdir()
    with pytest.raises(data.DatasetError, match="ibmGestureTrain/backup is not a trial folder"):
        data.load_dataset("dvs-gesture", tmp_path, time_steps=4, size=8, allow_incomplete=True)


def test_data_dir_naming_a_file(tmp_path, monkeypatch, no_network):
    not_a_folder = tmp_path / "datasets.tar"
    not_a_folder.write_bytes(b"x")
    monkeypatch.setenv("TESS_DATA_DIR", str(not_a_folder))
    with pytest.raises(data.DatasetError, match=r"\$TESS_DATA_DIR is .*datasets.tar, which is a file, not a folder"):
        data.load_dataset("nmnist")
    explicit = "datasets folder \\(--data-dir or \\$TESS_DATA_DIR\\) is .*which is a file"
    with pytest.raises(data.DatasetError, match=explicit):
        data.load_dataset("nmnist", not_a_folder)


def test_class_absent_from_the_labels_of_a_file(tmp_path, no_network):
    """SHD's classes come from the labels stored in its HDF5 files: a class absent from a split is named."""
    rng = np.random.default_rng(3)
    for name, labels in (("shd_train.h5", np.repeat(np.arange(20), 2)), ("shd_test.h5", np.arange(19))):
        samples = [(np.sort(rng.uniform(0.0, 0.9, 8)), rng.integers(0, 700, 8)) for _ in labels]
        write_shd_h5(tmp_path / "SHD" / name, samples, labels)
    with pytest.raises(data.DatasetError, match="'shd' is incomplete: class\\(es\\) 19 absent from test"):
        data.load_dataset("shd", tmp_path, time_steps=4)
    splits = data.load_dataset("shd", tmp_path, time_steps=4, allow_incomplete=True)
    assert splits.incomplete == ["class(es) 19 absent from test"] and splits.class_counts()["test"][19] == 0
