"""Learning on the built-in digits (CPU, seeded): the rules actually learn.

Issue 2: TESS reaches >= 95 % test accuracy within 20 epochs and beats the
same network with its hidden layers frozen (readout trained alone) by >= 2
points; BPTT and S-TLLR also reach >= 95 %.

Protocol of issue 11 (as ``tess train``): the validation split, carved out of
the training data, drives ReduceLROnPlateau and the per-epoch curve; the test
split is evaluated once, on the last epoch's model. Run with ``-s`` to see the
figures the README quotes.
"""

import keras
import pytest

from tess_keras import data, models

pytestmark = pytest.mark.slow

EPOCHS = 20


def fit_digits(rule, freeze_hidden=False):
    """Test accuracy (one evaluation, at the end) and per-epoch validation accuracies of a seeded run."""
    keras.utils.set_random_seed(0)
    splits = data.load_dataset("digits", time_steps=4)
    assert len(splits.y_val) > 0
    train = data.make_tf_dataset(splits, "train", 32, shuffle=True, seed=0)
    validation = data.make_tf_dataset(splits, "validation", 128)
    test = data.make_tf_dataset(splits, "test", 128)
    model = models.mcu_net(splits.input_shape, splits.num_classes, rule=rule)
    if freeze_hidden:
        for layer in model.spiking_layers:
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(
        train,
        validation_data=validation,
        epochs=EPOCHS,
        shuffle=False,  # the tf.data pipeline shuffles; Keras ignores shuffle= for datasets
        verbose=0,
        callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=5)],
    )
    curve = history.history["val_accuracy"]
    test_accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    print(f"\ndigits {rule}{' frozen hidden' if freeze_hidden else ''}: {len(splits.y_train)} train / "
          f"{len(splits.y_val)} validation / {len(splits.y_test)} test, validation {curve[-1]:.4f}, "
          f"test {test_accuracy:.4f}")
    return test_accuracy, curve


@pytest.fixture(scope="module")
def tess_result():
    return fit_digits("tess")


def test_tess_learns_digits(tess_result):
    final, curve = tess_result
    assert max(curve) >= 0.95, curve
    assert final >= 0.95, curve


def test_tess_beats_frozen_hidden_layers(tess_result):
    final, _ = tess_result
    frozen_final, frozen_curve = fit_digits("tess", freeze_hidden=True)
    assert final >= frozen_final + 0.02, (final, frozen_curve)


@pytest.mark.parametrize("rule", ["bptt", "stllr"])
def test_global_rules_learn_digits(rule):
    final, curve = fit_digits(rule)
    assert final >= 0.95, curve
