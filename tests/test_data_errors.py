"""Missing folders, missing files and corrupt files: one clear message, no
traceback, no download attempt; and the ``tess datasets`` table."""

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from test_data_writers import (  # noqa: F401  (no_network is a fixture)
    no_network, random_events, write_aedat4, write_gesture_npy, write_nmnist_bin, write_shd_h5,
)
from tess_keras import data
from tess_keras.data import catalog

EVENT_DATASETS = ("cifar10-dvs", "dvs-gesture", "nmnist", "shd", "cifar10", "cifar100")


@pytest.mark.parametrize("name", EVENT_DATASETS)
def test_missing_directory_names_dataset_layout_and_source(tmp_path, name, no_network, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no_keras"))
    missing = tmp_path / "not_there"
    with pytest.raises(data.DatasetError) as caught:
        data.load_dataset(name, missing)
    message = str(caught.value)
    info = catalog.INFO[name]
    assert f"Dataset {name!r}" in message
    assert info.layout.replace("DATA_DIR", str(missing)) in message  # the exact layout, with the real path
    assert info.source.replace("DATA_DIR", str(missing)) in message and "http" in message
    assert "Nothing is downloaded automatically" in message
    assert "\n" not in message  # one paragraph


def test_data_dir_from_environment(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TESS_DATA_DIR", str(tmp_path / "env_dir"))
    with pytest.raises(data.DatasetError, match="env_dir"):
        data.load_dataset("nmnist")
    assert data.resolve_data_dir() == tmp_path / "env_dir"
    monkeypatch.delenv("TESS_DATA_DIR")
    assert data.resolve_data_dir() == data.base.DEFAULT_DATA_DIR.expanduser()


def test_missing_files_listed(tmp_path, no_network):
    rng = np.random.default_rng(0)
    write_aedat4(tmp_path / "CIFAR10DVS" / "airplane" / "a_0.aedat4", *random_events(rng, 50, 128, 128, 10_000))
    (tmp_path / "CIFAR10DVS" / "truck").mkdir()
    with pytest.raises(data.DatasetError, match="no .aedat4 files for class.*automobile.*truck"):
        data.load_dataset("cifar10-dvs", tmp_path)
    write_nmnist_bin(tmp_path / "NMNIST" / "Train" / "1" / "a.bin", *random_events(rng, 5, 34, 34, 1000)[1:], [1] * 5)
    with pytest.raises(data.DatasetError, match=r"NMNIST/Test"):
        data.load_dataset("nmnist", tmp_path)
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [([0.1], [3])], [1])
    with pytest.raises(data.DatasetError, match="shd_test.h5"):
        data.load_dataset("shd", tmp_path)


def _gesture_dir(root, rng):
    for folder, label in (("ibmGestureTrain", 1), ("ibmGestureTest", 2)):
        t = np.sort(rng.integers(0, 2000, 100))
        write_gesture_npy(root / "DVSGesture" / folder / "user01_led" / f"{label}.npy",
                          rng.integers(0, 128, 100), rng.integers(0, 128, 100), rng.integers(0, 2, 100), t)


def test_corrupt_files_are_named(tmp_path, no_network):
    rng = np.random.default_rng(1)
    # AEDAT4 cut in half.
    for class_name in catalog.CIFAR10_DVS_CLASSES:
        write_aedat4(tmp_path / "CIFAR10DVS" / class_name / "r_0.aedat4", *random_events(rng, 300, 128, 128, 50_000))
    bad = tmp_path / "CIFAR10DVS" / "dog" / "r_0.aedat4"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(data.DatasetError, match=f"{bad} is not a readable AEDAT4 file"):
        data.load_dataset("cifar10-dvs", tmp_path)
    # No cache entry (not even a temporary one) is left from the failed build.
    cache_root = tmp_path / catalog.CACHE_FOLDER
    assert not cache_root.exists() or not any(cache_root.iterdir())

    # Truncated .npy, then a wrongly named one.
    _gesture_dir(tmp_path, rng)
    npy = tmp_path / "DVSGesture" / "ibmGestureTest" / "user01_led" / "2.npy"
    npy.write_bytes(npy.read_bytes()[:150])
    with pytest.raises(data.DatasetError, match=f"{npy} is not a readable .npy array"):
        data.load_dataset("dvs-gesture", tmp_path, allow_incomplete=True)
    npy.unlink()
    write_gesture_npy(npy.with_name("clap.npy"), [1], [1], [1], [5])
    with pytest.raises(data.DatasetError, match="clap.npy: DVS Gesture samples are named <label>.npy"):
        data.load_dataset("dvs-gesture", tmp_path, allow_incomplete=True)

    # N-MNIST file with a partial event, and one with an address outside the 34x34 sensor.
    for folder in ("Train", "Test"):
        write_nmnist_bin(tmp_path / "NMNIST" / folder / "4" / "1.bin", [1, 2], [3, 4], [0, 1], [10, 20])
    partial = tmp_path / "NMNIST" / "Test" / "4" / "1.bin"
    partial.write_bytes(partial.read_bytes()[:7])
    with pytest.raises(data.DatasetError, match=f"{partial} is 7 bytes, not a whole number of 5-byte events"):
        data.load_dataset("nmnist", tmp_path, allow_incomplete=True)
    write_nmnist_bin(partial, [1, 40], [3, 4], [0, 1], [10, 20])
    with pytest.raises(data.DatasetError, match=f"{partial} has events outside the 34x34 sensor"):
        data.load_dataset("nmnist", tmp_path, allow_incomplete=True)

    # SHD file that is not HDF5.
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [([0.1, 0.2], [3, 4])], [1])
    (tmp_path / "SHD" / "shd_test.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 40)
    with pytest.raises(data.DatasetError, match="shd_test.h5 is not a readable SHD HDF5 file"):
        data.load_dataset("shd", tmp_path)


def test_unknown_dataset_and_option(no_network):
    with pytest.raises(data.DatasetError, match="Unknown dataset 'emnist'; choose one of digits, digits-dvs"):
        data.load_dataset("emnist")
    with pytest.raises(data.DatasetError, match="has no option size"):
        data.load_dataset("digits", size=4)


def test_tess_train_reports_a_missing_dataset_without_traceback(tmp_path, no_network):
    from tess_keras.cli.main import app

    result = CliRunner().invoke(app, ["train", "--dataset", "dvs-gesture", "--data-dir", str(tmp_path / "none"),
                                      "--epochs", "1", "--out", str(tmp_path / "run")])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, output
    assert "Traceback" not in output and "ibmGestureTrain" in output


def _status_lines(output):
    """``{dataset: its status line}`` from ``tess datasets``'s blocks (a
    ``name  T=..`` header, then ``  status ...``)."""
    lines, name = {}, None
    for line in output.splitlines():
        if line and not line.startswith(" ") and " T=" in line:
            name = line.split()[0]
        elif name and line.strip().startswith("status"):
            lines[name] = line
            name = None
    return lines


def test_tess_datasets_table(tmp_path, no_network, monkeypatch):
    from tess_keras.cli.main import app

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no_keras"))
    monkeypatch.setenv("COLUMNS", "250")
    rng = np.random.default_rng(2)
    for folder, count in (("Train", 2), ("Test", 1)):
        for digit in range(10):
            for index in range(count):
                t, x, y, p = random_events(rng, 20, 34, 34, 1000)
                write_nmnist_bin(tmp_path / "NMNIST" / folder / str(digit) / f"s{index}.bin", x, y, p, t)
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = _status_lines(result.output)
    assert "found, 30 samples" in lines["nmnist"]
    assert "train 10 / validation 10 / test 10" in result.output
    assert "missing" in lines["cifar10-dvs"] and "missing" in lines["shd"] and "missing" in lines["cifar10"]
    assert "found, 1797 samples" in lines["digits"]
    assert str(tmp_path / "CIFAR10DVS") in result.output  # the layout under the chosen folder
    # A deleted class folder: incomplete, named.
    (tmp_path / "NMNIST" / "Test" / "9" / "s0.bin").unlink()
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    lines = _status_lines(result.output)
    assert result.exit_code == 0 and "incomplete, 29 samples" in lines["nmnist"]
    assert "NMNIST/Test/9/: no .bin files" in result.output


def test_tess_datasets_does_not_import_tensorflow(tmp_path):
    code = ("import sys; from typer.testing import CliRunner; from tess_keras.cli.main import app; "
            f"r = CliRunner().invoke(app, ['datasets', '--data-dir', {str(tmp_path)!r}]); "
            "assert r.exit_code == 0, r.output; print('tensorflow' in sys.modules, 'tonic' in sys.modules)")
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
