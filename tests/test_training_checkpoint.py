"""Checkpoints: name-keyed variables, atomic replacement (a write killed at
any point leaves the previous checkpoint loadable), clean failure."""

import errno
import json
import os

import keras
import numpy as np
import pytest

from tess_keras import models, training
from tess_keras.training import checkpoint as checkpoint_module


def build(seed, model="mcu", shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    net = models.build_model(model, shape, 10, "tess")
    net.compile(optimizer=keras.optimizers.Adam(1e-3))
    net.optimizer.build(net.trainable_variables)
    return net


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def state(epochs):
    return training.TrainingState(epochs_done=epochs, history=[{"epoch": e} for e in range(1, epochs + 1)])


def test_variables_are_keyed_by_name(tmp_path):
    net = build(1)
    path = tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, net, state(1))
    arrays = training.read_arrays(path)
    assert list(arrays["model"]) == ["conv1/kernel", "conv1/gain", "conv2/kernel", "conv2/gain", "conv3/kernel",
                                     "conv3/gain", "readout/kernel", "readout/bias"]
    assert {"optimizer/iteration", "optimizer/learning_rate", "optimizer/mcu_net_conv1_kernel_momentum"} <= set(
        arrays["optimizer"])
    for weight, saved in zip(net.weights, arrays["model"].values()):
        np.testing.assert_array_equal(np.asarray(weight), saved)
    # A second optimizer in the same process is named adam_1: the keys do not change.
    other = build(2)
    assert other.optimizer.name != net.optimizer.name
    assert list(training.named_variables(other)[1]) == list(arrays["optimizer"])


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, build(1), state(1))
    for other in (build(2, "vgg9", (32, 32, 2)), build(2, "mcu", (16, 16, 2))):
        with pytest.raises(training.ConfigError, match="does not match the model"):
            training.load_checkpoint(path, other)


def test_a_write_killed_between_the_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first, path = build(1), tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, first, state(1))
    second = build(2)
    real_rename, calls = os.rename, []

    def rename(source, target):
        calls.append((source, target))
        if len(calls) == 2:  # checkpoint -> checkpoint.old done, checkpoint.tmp -> checkpoint not yet
            raise KeyboardInterrupt("killed")
        real_rename(source, target)

    monkeypatch.setattr(checkpoint_module.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        training.save_checkpoint(path, second, state(2))
    monkeypatch.setattr(checkpoint_module.os, "rename", real_rename)
    assert not path.exists() and training.resolve_checkpoint(path) == tmp_path / "checkpoint.old"

    restored = build(3)
    loaded, _ = training.load_checkpoint(path, restored)
    assert loaded.epochs_done == 1
    for a, b in zip(first.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)

    # The next save completes and leaves no debris.
    training.save_checkpoint(path, second, state(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert training.read_state(path)["state"]["epochs_done"] == 2


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_debris(tmp_path, monkeypatch):
    import tensorflow as tf

    path = tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, build(1), state(1))
    before = snapshot(path)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", full)
    with pytest.raises(OSError, match="No space left"):
        training.save_checkpoint(path, build(2), state(2))
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_unreadable_or_foreign_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / training.CHECKPOINT
    with pytest.raises(training.ConfigError, match="holds no checkpoint"):
        training.read_state(path)
    training.save_checkpoint(path, build(1), state(1))
    meta = json.loads((path / checkpoint_module.STATE).read_text())
    (path / checkpoint_module.STATE).write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(training.ConfigError, match="another version of tess-keras"):
        training.load_checkpoint(path, build(2))
    (path / checkpoint_module.STATE).write_text("{not json")
    with pytest.raises(training.ConfigError, match="cannot read the checkpoint"):
        training.load_checkpoint(path, build(2))


def test_a_state_file_without_its_fields_is_a_clear_error(tmp_path):
    path = tmp_path / training.CHECKPOINT
    training.save_checkpoint(path, build(1), state(1))
    meta = json.loads((path / checkpoint_module.STATE).read_text())
    for damaged in ({**meta, "variables": []}, {k: v for k, v in meta.items() if k != "state"},
                    {**meta, "state": {**meta["state"], "epoch": 3}}):
        (path / checkpoint_module.STATE).write_text(json.dumps(damaged))
        with pytest.raises(training.ConfigError, match="is damaged"):
            training.load_checkpoint(path, build(2))
