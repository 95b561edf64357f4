"""digits-dvs: the built-in event dataset (simulated saccades over the digits)."""

import numpy as np
import pytest

from test_data_writers import no_network  # noqa: F401  (fixture)
from tess_keras import data
from tess_keras.data import digits_dvs


@pytest.fixture(scope="module")
def digits_dvs_dir(tmp_path_factory):
    """One generated copy of the dataset (default T, 12x12 frames) shared by this module."""
    root = tmp_path_factory.mktemp("digits_dvs")
    data.load_dataset("digits-dvs", root, size=12)
    return root


def test_recordings_are_deterministic_per_seed_and_sorted_in_time():
    first, labels = digits_dvs.digits_dvs_events(seed=5, indices=[0, 1, 2, 300])
    again, _ = digits_dvs.digits_dvs_events(seed=5, indices=[0, 1, 2, 300])
    other, _ = digits_dvs.digits_dvs_events(seed=6, indices=[0, 1, 2, 300])
    alone, _ = digits_dvs.digits_dvs_events(seed=5, indices=[300])  # independent of the batch it is simulated in
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(labels, load_digits().target[[0, 1, 2, 300]])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[3], alone[0])
    assert any(len(a) != len(c) or not np.array_equal(a, c) for a, c in zip(first, other))
    for recording in first:
        assert len(recording) > 200
        assert np.all(np.diff(recording["t"]) >= 0)
        assert 0 <= recording["t"].min() and recording["t"].max() < digits_dvs.DURATION_US
        assert recording["x"].max() < digits_dvs.SENSOR and recording["y"].max() < digits_dvs.SENSOR
        on = recording["p"].mean()
        assert 0.2 < on < 0.8  # both polarities: edges enter and leave pixels


def test_events_follow_the_saccade_edges():
    """A dark-to-bright edge moving right makes ON events where ink arrives."""
    image = np.zeros((1, digits_dvs.IMAGE, digits_dvs.IMAGE), np.float32)
    image[0, :, :8] = 1.0
    (recording,) = digits_dvs.simulate_events(image, seed=0)
    first_saccade = recording[(recording["t"] < digits_dvs.SACCADE_US)]
    # Motion during the first saccade is to +x: the right edge of the bright block advances (ON), the
    # left edge trails (OFF).
    on_x = first_saccade["x"][first_saccade["p"]].mean()
    off_x = first_saccade["x"][~first_saccade["p"]].mean()
    assert on_x > off_x


def test_frames_non_empty_and_split_like_digits(digits_dvs_dir, no_network):
    splits = data.load_dataset("digits-dvs", digits_dvs_dir, size=12)
    assert splits.encoding == "frames" and splits.time_steps == 6 and splits.num_classes == 10
    assert splits.x_train.shape[1:] == (6, 12, 12, 2) and splits.x_test.shape == (397, 6, 12, 12, 2)
    assert len(splits.y_train) + len(splits.y_val) == 1400 and len(splits.y_val) == 141  # 10 % validation per class
    assert splits.x_train.dtype == np.uint8
    for x in (splits.x_train, splits.x_val, splits.x_test):
        per_sample = np.asarray(x).reshape(len(x), -1).sum(axis=1)
        assert per_sample.min() > 100
        assert np.asarray(x).sum(axis=(0, 2, 3, 4)).min() > 0  # every time bin has events
    plain = data.load_dataset("digits", seed=0)
    np.testing.assert_array_equal(splits.y_train, plain.y_train)
    np.testing.assert_array_equal(splits.y_val, plain.y_val)
    np.testing.assert_array_equal(splits.y_test, plain.y_test)
    # The frames are the recordings binned (2x2 pixels summed): test sample 0, recomputed from its events.
    index = np.random.default_rng(0).permutation(1797)[1400]
    (recording,), _ = digits_dvs.digits_dvs_events(seed=0, indices=[index])
    bins = recording["t"] // (digits_dvs.DURATION_US // 6)
    expected = np.zeros((6, 12, 12, 2), np.int64)
    np.add.at(expected, (bins, recording["y"] // 2, recording["x"] // 2, recording["p"].astype(int)), 1)
    np.testing.assert_array_equal(splits.x_test[0], np.minimum(expected, 255))


@pytest.mark.slow
def test_tess_learns_digits_dvs_well_above_chance(digits_dvs_dir, no_network):
    import keras

    from tess_keras import models, rules

    splits = data.load_dataset("digits-dvs", digits_dvs_dir, size=12)
    assert splits.input_shape == (12, 12, 2)
    keras.utils.set_random_seed(0)
    model = models.mcu_net(splits.input_shape, 10, rule=rules.get("tess", alpha_post=1.0))
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(data.make_tf_dataset(splits, "train", 32, shuffle=True, seed=0), epochs=3, shuffle=False, verbose=0)
    _, accuracy = model.evaluate(data.make_tf_dataset(splits, "test", 128), verbose=0)
    assert accuracy > 0.5, f"test accuracy {accuracy:.3f} (chance 0.1)"
