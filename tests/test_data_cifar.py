"""CIFAR10/100 from python-pickle batches (archive, extracted folder, Keras
cache) and the tf.data pipeline's normalisation and augmentation."""

import tarfile

import numpy as np
import pytest

from test_data_writers import no_network, write_cifar_batch  # noqa: F401  (no_network is a fixture)
from tess_keras import data
from tess_keras.data.cifar import CIFAR10_NORMALIZATION

PER_BATCH = 6


def make_cifar10(folder, rng):
    """cifar-10-batches-py with five tiny data batches and a test batch; returns (train images, labels)."""
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch_images = rng.integers(0, 256, (PER_BATCH, 32, 32, 3), dtype=np.uint8)
        batch_labels = rng.integers(0, 10, PER_BATCH)
        write_cifar_batch(folder / "cifar-10-batches-py" / name, batch_images, batch_labels)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def make_archive(folder, inner, archive):
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(folder / inner, arcname=inner)


@pytest.fixture
def cifar10_dir(tmp_path):
    images, labels = make_cifar10(tmp_path / "src", np.random.default_rng(0))
    return tmp_path, images, labels


@pytest.mark.parametrize("where", ["folder", "archive", "keras3-cache", "keras2-archive"])
def test_cifar10_from_each_place(cifar10_dir, where, monkeypatch, no_network):
    root, images, labels = cifar10_dir
    data_dir = root / "data"
    data_dir.mkdir()
    keras_home = root / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    if where == "folder":
        (root / "src" / "cifar-10-batches-py").rename(data_dir / "cifar-10-batches-py")
    elif where == "archive":
        make_archive(root / "src", "cifar-10-batches-py", data_dir / "cifar-10-python.tar.gz")
    elif where == "keras3-cache":
        target = keras_home / "datasets" / "cifar-10-batches-py-target"
        target.mkdir(parents=True)
        (root / "src" / "cifar-10-batches-py").rename(target / "cifar-10-batches-py")
    else:
        (keras_home / "datasets").mkdir(parents=True)
        make_archive(root / "src", "cifar-10-batches-py", keras_home / "datasets" / "cifar-10-batches-py.tar.gz")
    splits = data.load_dataset("cifar10", data_dir, validation_fraction=0, allow_incomplete=True)
    assert splits.encoding == "direct" and splits.time_steps == 6 and splits.num_classes == 10
    assert splits.x_train.shape == (5 * PER_BATCH, 32, 32, 3) and splits.x_train.dtype == np.uint8
    assert splits.x_test.shape == (PER_BATCH, 32, 32, 3)
    np.testing.assert_array_equal(splits.x_train, images[: 5 * PER_BATCH])  # R, G, B planes -> channels last
    np.testing.assert_array_equal(splits.y_train, labels[: 5 * PER_BATCH])
    np.testing.assert_array_equal(splits.x_test, images[5 * PER_BATCH:])
    status = data.scan("cifar10", data_dir)
    assert status.found and status.samples == 6 * PER_BATCH


def test_cifar100_fine_labels(tmp_path, no_network):
    rng = np.random.default_rng(1)
    folder = tmp_path / "src" / "cifar-100-python"
    train_images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    train_labels = rng.integers(0, 100, 8)
    write_cifar_batch(folder / "train", train_images, train_labels, label_key="fine_labels")
    write_cifar_batch(folder / "test", train_images[:3], train_labels[:3], label_key="fine_labels")
    make_archive(tmp_path / "src", "cifar-100-python", tmp_path / "cifar-100-python.tar.gz")
    splits = data.load_dataset("cifar100", tmp_path, time_steps=2, validation_fraction=0, allow_incomplete=True)
    assert splits.num_classes == 100 and splits.time_steps == 2 and splits.cutout == 8
    np.testing.assert_array_equal(splits.x_train, train_images)
    np.testing.assert_array_equal(splits.y_train, train_labels)


def test_pipeline_normalises_and_repeats_over_time(cifar10_dir, no_network):
    root, images, labels = cifar10_dir
    (root / "src" / "cifar-10-batches-py").rename(root / "cifar-10-batches-py")
    splits = data.load_dataset("cifar10", root, time_steps=3, allow_incomplete=True)
    batches = list(data.make_tf_dataset(splits, "test", 4))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    assert x.shape == (PER_BATCH, 3, 32, 32, 3) and x.dtype == np.float32
    mean, std = (np.array(v, np.float32) for v in CIFAR10_NORMALIZATION)
    expected = (images[5 * PER_BATCH:] / np.float32(255) - mean) / std
    for t in range(3):
        np.testing.assert_allclose(x[:, t], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, labels[5 * PER_BATCH:])


def _find_crop(padded, out):
    """The (dy, dx) offset at which ``out`` is a crop of ``padded`` (None if none)."""
    height, width = out.shape[-3], out.shape[-2]
    for dy in range(padded.shape[-3] - height + 1):
        for dx in range(padded.shape[-2] - width + 1):
            if np.array_equal(padded[..., dy:dy + height, dx:dx + width, :], out):
                return dy, dx
    return None


def test_cifar_augmentation_crops_flips_and_cuts_out(no_network):
    rng = np.random.default_rng(2)
    images = rng.integers(1, 256, (32, 32, 32, 3), dtype=np.uint8)  # no zeros: cutout pixels are exact zeros
    # labels are the image indices, so each output can be traced to its source image
    splits = data.DatasetSplits("toy", images, np.arange(32), images[:2], np.arange(2), 32, 2,
                                encoding="direct", augmentation="cifar", normalization=None, cutout=8)
    x, y = next(iter(data.make_tf_dataset(splits, "train", 32, augment=True, seed=3)))
    x, y = x.numpy(), y.numpy()
    np.testing.assert_array_equal(x[:, 0], x[:, 1])  # the same augmented image at every step
    source = images / np.float32(255)
    offsets, flips, cut = set(), 0, 0
    for i in range(32):
        out = x[i, 0]
        cut += np.all(out == 0, axis=-1).sum() > 0
        padded = np.pad(source[y[i]], ((4, 4), (4, 4), (0, 0)))
        # Undo the cutout by comparing only where the output is non-zero.
        mask = np.any(out != 0, axis=-1)
        found = None
        for flipped in (False, True):
            candidate = padded[:, ::-1] if flipped else padded
            for dy in range(9):
                for dx in range(9):
                    window = candidate[dy:dy + 32, dx:dx + 32]
                    if np.allclose(window[mask], out[mask]):
                        found = (dy, dx, flipped)
                        break
                if found:
                    break
            if found:
                break
        assert found is not None, f"sample {i} is not a (flipped) crop of its image"
        offsets.add(found[:2])
        flips += found[2]
    assert len(offsets) > 8 and 4 < flips < 28 and cut > 16


def test_frame_crop_is_the_same_for_every_frame(no_network):
    rng = np.random.default_rng(4)
    frames = rng.integers(1, 9, (16, 3, 12, 12, 2), dtype=np.uint8)
    splits = data.DatasetSplits("toy-dvs", frames, np.arange(16), frames[:4], np.arange(4), 16, 3,
                                encoding="frames", augmentation="crop")
    x, y = next(iter(data.make_tf_dataset(splits, "train", 16, shuffle=True, augment=True, seed=0)))
    x, y = x.numpy(), y.numpy()
    assert x.shape == (16, 3, 12, 12, 2) and sorted(y.tolist()) == list(range(16))
    offsets = set()
    for i in range(16):
        padded = np.pad(frames[y[i]].astype(np.float32), ((0, 0), (4, 4), (4, 4), (0, 0)))
        offset = _find_crop(padded, x[i])  # one offset explains all T frames
        assert offset is not None
        offsets.add(offset)
    assert len(offsets) > 3
    # Test subset / augment=False: frames unchanged.
    x_test, _ = next(iter(data.make_tf_dataset(splits, "test", 4)))
    np.testing.assert_array_equal(x_test.numpy(), frames[:4].astype(np.float32))


def test_truncated_archive_and_corrupt_batch_name_the_file(cifar10_dir, no_network):
    root, _, _ = cifar10_dir
    archive = root / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    make_archive(root / "src", "cifar-10-batches-py", archive)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DatasetError, match="cifar-10-python.tar.gz"):
        data.load_dataset("cifar10", root / "data")
    folder = root / "src" / "cifar-10-batches-py"
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(data.DatasetError, match="data_batch_3 is corrupt or truncated"):
        data.load_dataset("cifar10", root / "src")
