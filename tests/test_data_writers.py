"""Writers of small files in each dataset's real on-disk format, shared by the
test_data_* modules, and checks that each written file reads back exactly
through the reader the dataset uses (tonic's, h5py, pickle)."""

import pickle
import socket

import numpy as np
import pytest


# ----------------------------------------------------------------------------- no network

class NetworkAttempt(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly (and record) any attempt to open a network connection."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise NetworkAttempt(f"network access attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"network access attempted {len(attempts)} time(s)"


# ----------------------------------------------------------------------------- events

def random_events(rng, count, width, height, duration_us, start_us=0):
    """Time-sorted ``(t, x, y, p)`` integer arrays."""
    t = np.sort(rng.integers(start_us, start_us + duration_us, count))
    return t, rng.integers(0, width, count), rng.integers(0, height, count), rng.integers(0, 2, count)


def write_aedat4(path, t, x, y, p, resolution=(128, 128)):
    """A real AEDAT4 file written by iniVation's dv-processing."""
    import dv_processing as dv

    path.parent.mkdir(parents=True, exist_ok=True)
    store = dv.EventStore()
    for ti, xi, yi, pi in zip(t.tolist(), x.tolist(), y.tolist(), p.tolist()):
        store.push_back(ti, xi, yi, bool(pi))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_test", resolution))
    writer.writeEvents(store)
    del writer  # closes the file (writes the AEDAT4 footer/index)


def write_gesture_npy(path, x, y, p, t_ms):
    """A DVS Gesture sample as in tonic's preprocessed archives: ``[N, 4]`` x, y, p, t (ms)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([x, y, p, t_ms], axis=1).astype(np.float64))


def write_nmnist_bin(path, x, y, p, t_us):
    """N-MNIST's 5-byte ATIS events: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.zeros((len(x), 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((np.asarray(t_us) >> 16) & 0x7F)
    raw[:, 3] = (np.asarray(t_us) >> 8) & 0xFF
    raw[:, 4] = np.asarray(t_us) & 0xFF
    path.write_bytes(raw.tobytes())


def write_shd_h5(path, samples, labels):
    """An SHD file: ``spikes/times`` (s) and ``spikes/units`` as ragged arrays, ``labels``."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        times = handle.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = handle.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for index, (sample_times, sample_units) in enumerate(samples):
            times[index] = np.asarray(sample_times, np.float16)
            units[index] = np.asarray(sample_units, np.uint16)
        handle.create_dataset("labels", data=np.asarray(labels, np.uint16))
        handle.create_dataset("extra/keys", data=np.array([f"digit-{i}".encode() for i in range(20)]))
        handle.create_dataset("extra/speaker", data=np.zeros(len(samples), np.uint16))


def write_cifar_batch(path, images, labels, label_key="labels"):
    """A CIFAR python batch: a pickled dict with bytes keys, ``data`` rows of R, G, B planes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": b"test batch", label_key.encode(): list(map(int, labels)), b"data": rows,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    if label_key == "fine_labels":
        batch[b"coarse_labels"] = [int(v) // 5 for v in labels]
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


# ----------------------------------------------------------------------------- the writers are faithful

def test_aedat4_written_by_dv_processing_reads_back_through_tonic(tmp_path):
    from tonic.io import read_aedat4

    t, x, y, p = random_events(np.random.default_rng(0), 500, 128, 128, 50_000, start_us=1_000)
    write_aedat4(tmp_path / "a.aedat4", t, x, y, p)
    events = read_aedat4(str(tmp_path / "a.aedat4"))
    events.dtype.names = ("t", "x", "y", "p")
    np.testing.assert_array_equal(events["t"], t)
    np.testing.assert_array_equal(events["x"], x)
    np.testing.assert_array_equal(events["y"], y)
    np.testing.assert_array_equal(events["p"], p.astype(bool))


def test_nmnist_bin_reads_back_through_tonic(tmp_path):
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    t, x, y, p = random_events(np.random.default_rng(1), 300, 34, 34, 300_000)
    write_nmnist_bin(tmp_path / "00001.bin", x, y, p, t)
    events = read_mnist_file(str(tmp_path / "00001.bin"), dtype=NMNIST.dtype)
    for name, column in zip("txyp", (t, x, y, p)):
        np.testing.assert_array_equal(events[name], column)


def test_network_guard_catches_tonics_own_download_path(tmp_path, no_network):
    """The guard every data test uses does stop a real download attempt:
    tonic's dataset class, on an empty folder, tries to fetch the archive."""
    from tonic.datasets import CIFAR10DVS

    with pytest.raises(Exception) as caught:
        CIFAR10DVS(save_to=str(tmp_path))
    assert len(no_network) >= 1, caught.value
    no_network.clear()  # expected here; the fixture would otherwise fail the test
